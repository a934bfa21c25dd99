"""The YAML reader under hostile input: every refusal is a fast `ConfigError` naming file and line.

Loads that could hang on the old reader (a named pipe, /dev/zero) run in a helper thread with a
bound, so a regression fails the test instead of freezing the suite.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lucky_litellm import ConfigError, Models
from lucky_litellm.config import YamlLimits, load_user_config, validate_user_config

GOOD = "experiments:\n  x:\n    providers: [openai/gpt-4.1-mini]\n"


def outcome(load: Callable[[], Any], bound_s: float = 10.0) -> BaseException | None:
    """What `load` raised (None if it returned), failing the test if it does not end within `bound_s`."""
    result: list[BaseException | None] = []

    def run() -> None:
        try:
            load()
            result.append(None)
        except BaseException as exc:  # the test inspects it
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(bound_s)
    assert result, f"still loading after {bound_s} s"
    return result[0]


def config_error(load: Callable[[], Any]) -> ConfigError:
    error = outcome(load)
    assert isinstance(error, ConfigError), repr(error)
    assert len(error.issues) == 1, str(error)
    return error


# -- files that are not files --------------------------------------------------------------------


def test_a_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "user.yaml"
    os.mkfifo(fifo)
    error = config_error(lambda: load_user_config(fifo))
    assert error.issues[0].file == str(fifo)
    assert "not a regular file" in error.issues[0].message


@pytest.mark.parametrize("source", [Path("/dev/zero"), "/dev/zero"])
def test_dev_zero_is_refused_not_read(source):
    error = config_error(lambda: load_user_config(source))
    assert "not a regular file" in error.issues[0].message


def test_a_file_over_the_size_limit_is_refused_before_it_is_parsed(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text(GOOD + ("# padding\n" * 110_000))  # 1.1 MB of comments after a valid config
    error = config_error(lambda: load_user_config(big))
    assert "larger than 1000000 bytes" in error.issues[0].message


def test_the_size_limit_is_configurable(tmp_path):
    path = tmp_path / "u.yaml"
    path.write_text(GOOD)
    with pytest.raises(ConfigError, match="larger than 20 bytes"):
        load_user_config(path, limits=YamlLimits(max_bytes=20))
    with pytest.raises(ConfigError, match="larger than 20 bytes"):
        load_user_config(GOOD, limits=YamlLimits(max_bytes=20))
    assert load_user_config(path, limits=YamlLimits(max_bytes=len(GOOD))).experiments["x"]


# -- documents that expand, nest or hide bytes ---------------------------------------------------

ALIAS_BOMB = """\
experiments:
  x:
    providers: [openai/gpt-4.1-mini]
    params:
      stop:
        - &a [x, x, x, x, x, x, x, x, x, x]
        - &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
        - &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
        - &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
        - &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
        - &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
        - &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
        - &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
"""


def test_an_alias_bomb_under_params_fails_at_load():
    """It used to load in 0.2 s, then block the event loop for 90 s copying params at call time."""
    error = config_error(lambda: Models(environ={}).load_user_config("u", ALIAS_BOMB))
    assert "once aliases are expanded" in error.issues[0].message
    assert error.issues[0].line is not None


def test_a_merge_key_bomb_fails_at_load():
    text = "a: &a {k0: 1, k1: 2}\n"
    for level, previous in zip("bcdefghijklmnopqrst", "abcdefghijklmnopqrs", strict=True):
        text += f"{level}: &{level} {{<<: [*{previous}, *{previous}], {level}: 1}}\n"
    error = config_error(lambda: load_user_config(text))
    assert "once aliases are expanded" in error.issues[0].message


def test_a_recursive_alias_is_refused():
    error = config_error(lambda: load_user_config("experiments: &e {x: {providers: [*e]}}\n"))
    assert "recursive" in error.issues[0].message


def test_ordinary_aliases_still_work():
    text = "experiments:\n  a: &base {providers: [openai/gpt-4.1-mini], timeout: 5000}\n  b: *base\n"
    config = load_user_config(text)
    assert config.experiments["b"].timeout == 5000


@pytest.mark.parametrize(
    "nesting", ["[" * 5000 + "]" * 5000, "{a: " * 5000 + "1" + "}" * 5000, "[" * 900_000]
)
def test_deep_nesting_is_a_config_error_not_a_recursion_error(nesting):
    error = config_error(lambda: load_user_config(f"experiments:\n  x: {nesting}\n"))
    assert "nested deeper than 64 levels" in error.issues[0].message
    assert error.issues[0].line == 2


def test_deep_python_data_in_params_is_refused():
    deep: Any = "x"
    for _ in range(5000):
        deep = [deep]
    error = config_error(
        lambda: validate_user_config(
            {"experiments": {"x": {"providers": ["openai/gpt-4.1-mini"], "params": {"stop": deep}}}}
        )
    )
    assert error.issues[0].path == "experiments.x.params.stop"


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\ud800", "\ufffe"])
def test_a_control_character_is_a_typed_error_with_its_line(char):
    text = f"name: ok\ndescription: a{char}b\nexperiments: {{x: {{providers: [openai/gpt-4.1-mini]}}}}\n"
    error = config_error(lambda: load_user_config(text))
    issue = error.issues[0]
    assert (issue.line, issue.path) == (2, "")
    assert f"U+{ord(char):04X}" in issue.message and "column 15" in issue.message
    assert not isinstance(error, yaml.YAMLError)


def test_a_nul_byte_in_a_file_names_the_file_and_line(tmp_path):
    path = tmp_path / "u.yaml"
    path.write_bytes(GOOD.encode() + b"name: a\x00b\n")
    issue = config_error(lambda: load_user_config(path)).issues[0]
    assert (issue.file, issue.line) == (str(path), 4)


def test_a_date_like_value_stays_text():
    """PyYAML built a datetime for `2001-02-30`, raising a raw ValueError."""
    config = load_user_config(GOOD + "description: 2001-02-30\n")
    assert config.description == "2001-02-30"


@pytest.mark.parametrize(
    "value", ["!!int 0b", "!!timestamp 2001-02-30", "!!float x", "!!binary é", "!!python/name:os.system ''"]
)
def test_an_explicit_tag_that_cannot_be_built_is_a_config_error(value):
    config_error(lambda: load_user_config(GOOD + f"description: {value}\n"))


def test_a_huge_integer_is_a_config_error():
    config_error(lambda: load_user_config(GOOD + "description: " + "9" * 5000 + "\n"))


# -- fuzzing: nothing but ConfigError ------------------------------------------------------------

YAML_CHARS = "abcxyz019 \t\n:-[]{},&*!|>'\"#%@`?<=.+_\\/\x00\x1b\x85\u2028\ud800é"
SNIPPETS = [
    *["<<: ", "&a ", "*a", "!!", "!!int ", "!!binary ", "!!python/name:os.system ", "!!timestamp ", "? "],
    *["experiments:", "providers:", "params:", "\n  - ", "defaults:", "timeout: ", "1e300", ".nan", "-.inf"],
    *["strategy: ", "tier:", "user:", "openai/gpt-4.1-mini", "---\n", "...\n", "%YAML 1.1\n", "2001-02-30"],
    *["api_base: ", "num_retries: 3", "costLimit: ", "9" * 30, "[[[[", "{a: {b: "],
]
VALID = (
    "name: x\nexperiments:\n  fast:\n    strategy: race\n    providers: [openai/gpt-4.1-mini, tier:nano]\n"
    "    timeout: 1000\n    hedgeAfter: 100\n    params: {temperature: 0, stop: [a]}\n"
    "defaults:\n  experiment: fast\n  costLimit: 5\n"
)
noise = st.text(alphabet=YAML_CHARS, max_size=40)
mutations = st.tuples(st.integers(0, len(VALID)), st.sampled_from(SNIPPETS), noise, st.integers(0, 8)).map(
    lambda m: VALID[: m[0]] + m[1] + m[2] + VALID[m[0] + m[3] :]
)


@settings(
    max_examples=2000,
    deadline=None,
    database=None,
    derandomize=True,  # the same 2,000 documents on every run: a failure here is never a flake
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.one_of(noise, mutations))
def test_fuzzed_yaml_raises_only_config_error(text):
    with contextlib.suppress(ConfigError):
        load_user_config(text + "\n")  # a newline: a one-line text could name a file
