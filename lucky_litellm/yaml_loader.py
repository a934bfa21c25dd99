"""YAML loading that remembers where each key was written.

Validation errors are only useful when they point at a line, so the document is first composed
into nodes (which carry their marks), walked once to record the line of every mapping key and
sequence item by path, and only then constructed into plain Python data. The same walk rejects
duplicate keys, which PyYAML would otherwise resolve silently by keeping the last one.

Every failure (missing file, syntax error, empty or non-mapping document, duplicate keys) is
raised as a `ConfigError` naming the file and line, never as a raw `yaml.YAMLError`.

Config files come from many hands, so the reader is defensive and fails fast (`YamlLimits`): only
regular files (a named pipe would hang, ``/dev/zero`` would fill the memory), at most 1 MB by
default, no control characters, bounded nesting (PyYAML's composer recurses), and a bounded size
*after* alias expansion, so an alias bomb is refused here instead of being copied on every call.
Dates stay strings: a config has no use for them, and ``2001-02-30`` would otherwise raise.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError, ConfigIssue, InvalidArgumentError

__all__ = [
    "DEFAULT_LIMITS",
    "LineMap",
    "PathPart",
    "SourceKind",
    "YamlLimits",
    "classify_source",
    "load_yaml",
    "yaml_type_name",
]

PathPart = str | int
SourceKind = Literal["path", "text", "mapping"]

_MERGE_TAG = "tag:yaml.org,2002:merge"
# What PyYAML's reader refuses (yaml.reader.Reader.NON_PRINTABLE), checked first so the error is ours.
_NON_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class YamlLimits:
    """What the YAML reader accepts; anything beyond is a `ConfigError`, raised before it costs much.

    >>> load_user_config("big.yaml", limits=YamlLimits(max_bytes=5_000_000))  # doctest: +SKIP
    """

    max_bytes: int = 1_000_000
    """Largest file (or YAML text) read, in bytes."""
    max_depth: int = 64
    """Deepest nesting of mappings and lists, aliases expanded."""
    max_nodes: int = 100_000
    """Most keys, values and items in the document once every alias is expanded."""


DEFAULT_LIMITS = YamlLimits()
_YAML_TYPE_NAMES = {
    "dict": "mapping",
    "list": "list",
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "NoneType": "null",
}


def yaml_type_name(value: object) -> str:
    """Name a value's type the way a YAML author thinks of it (mapping, list, string, ...)."""
    name = type(value).__name__
    return _YAML_TYPE_NAMES.get(name, name)


@dataclass(frozen=True)
class LineMap:
    """Line numbers (1-based) of the keys and list items of one document, by path.

    A path is a tuple such as ``("experiments", "fast", "providers", 1)``. Looking up a path
    that was never written (a missing key) falls back to its nearest written ancestor, which is
    where the author has to add it.
    """

    file: str | None = None
    lines: Mapping[tuple[str, ...], int] = field(default_factory=dict)
    """Keyed by the path with every part as text, so ``1`` (a list index or an int key) and ``"1"`` meet."""

    def under(self, prefix: tuple[PathPart, ...]) -> LineMap:
        """The lines of the part of the document at `prefix`, with paths relative to it."""
        key = tuple(str(part) for part in prefix)
        size = len(key)
        return LineMap(
            file=self.file,
            lines={path[size:]: line for path, line in self.lines.items() if path[:size] == key},
        )

    def line_for(self, path: tuple[PathPart, ...]) -> int | None:
        key = tuple(str(part) for part in path)
        for end in range(len(key), 0, -1):
            line = self.lines.get(key[:end])
            if line is not None:
                return line
        return None


def classify_source(source: object) -> SourceKind:
    """Decide whether `source` is a file path, YAML text or already-parsed data.

    A str counts as a path only when it is a single line that names an existing file or ends
    in .yaml/.yml; anything else is YAML text. This way ``"configs/x.yaml"`` that does not exist
    reports "file not found" instead of "expected a mapping, got string".
    """
    if isinstance(source, Mapping):
        return "mapping"
    if isinstance(source, os.PathLike):
        return "path"
    if isinstance(source, str):
        if "\n" in source:
            return "text"
        stripped = source.strip()
        # exists, not isfile: "/dev/zero" or a named pipe is a path, and gets refused as one
        if stripped.endswith((".yaml", ".yml")) or (stripped and os.path.exists(stripped)):
            return "path"
        return "text"
    raise InvalidArgumentError(f"expected a file path, YAML text or a mapping, got {type(source).__name__}")


def load_yaml(
    source: str | os.PathLike[str] | Mapping[str, Any], *, limits: YamlLimits = DEFAULT_LIMITS
) -> tuple[dict[str, Any], LineMap]:
    """Load a top-level mapping from a path, YAML text or a mapping, with its line map.

    A mapping is returned as a plain dict with an empty line map.
    """
    kind = classify_source(source)
    if isinstance(source, Mapping):
        return dict(source), LineMap()
    if kind == "path":
        path = Path(os.fspath(source).strip()).expanduser()
        return _parse(_read(path, limits), file=str(path), limits=limits)
    text = str(source)
    if len(text) > limits.max_bytes or len(text.encode("utf-8", "surrogatepass")) > limits.max_bytes:
        raise ConfigError(
            [ConfigIssue("", f"YAML text larger than {limits.max_bytes} bytes (YamlLimits.max_bytes)")],
            "invalid YAML",
        )
    return _parse(text, file=None, limits=limits)


def _read(path: Path, limits: YamlLimits) -> str:
    """The file's text, refusing anything that is not a regular file of bounded size.

    The file is opened non-blocking and checked with `fstat` on the open descriptor, so a named
    pipe cannot hang the open and nothing can be swapped in between the check and the read.
    """

    def fail(message: str) -> ConfigError:
        return ConfigError([ConfigIssue(path="", message=message, file=str(path))], f"cannot load {path}")

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise fail("file not found") from None
    except IsADirectoryError:
        raise fail("is a directory, expected a YAML file") from None
    except OSError as exc:
        raise fail(f"cannot read file ({exc.strerror or type(exc).__name__})") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if stat.S_ISDIR(info.st_mode):
            raise fail("is a directory, expected a YAML file")
        if not stat.S_ISREG(info.st_mode):
            raise fail("not a regular file (a named pipe, device or socket cannot be a config file)")
        too_big = f"file larger than {limits.max_bytes} bytes (YamlLimits.max_bytes)"
        if info.st_size > limits.max_bytes:
            raise fail(too_big)
        try:
            data = handle.read(limits.max_bytes + 1)
        except OSError as exc:
            raise fail(f"cannot read file ({exc.strerror or type(exc).__name__})") from None
    if len(data) > limits.max_bytes:  # grew since fstat
        raise fail(too_big)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            [ConfigIssue(path="", message="not UTF-8 text", file=str(path), line=line)], f"cannot load {path}"
        ) from None


class _TooDeep(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


class _Loader(yaml.SafeLoader):
    """SafeLoader with a nesting limit (the composer recurses) and without implicit dates."""

    max_depth = DEFAULT_LIMITS.max_depth
    _depth = 0

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        # The scanner reads a whole run of '[' / '{' ahead (each may start a simple key) before
        # the composer sees the first one: stop the run here, not only in compose_node.
        if self.flow_level >= self.max_depth:
            raise _TooDeep(self.line + 1)
        super().fetch_flow_collection_start(token_class)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > self.max_depth:
                raise _TooDeep(self.peek_event().start_mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _parse(
    text: str, *, file: str | None, limits: YamlLimits = DEFAULT_LIMITS
) -> tuple[dict[str, Any], LineMap]:
    def fail(message: str, line: int | None = None, title: str = "invalid YAML") -> ConfigError:
        return ConfigError([ConfigIssue(path="", message=message, file=file, line=line)], title)

    bad = _NON_PRINTABLE.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        column = bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1
        raise fail(
            f"control character U+{ord(bad.group()):04X} at column {column} (not allowed in YAML)", line
        )
    loader = _Loader(text)
    loader.max_depth = limits.max_depth
    try:
        node = loader.get_single_node()
        if node is None:
            raise fail("empty document", title="invalid configuration")
        _check_expansion(node, limits, fail)
        lines, duplicates = _walk(node, file)
        if duplicates:
            raise ConfigError(duplicates, "invalid YAML")
        data = loader.construct_document(node)
    except ConfigError:
        raise
    except _TooDeep as exc:
        raise fail(f"nested deeper than {limits.max_depth} levels (YamlLimits.max_depth)", exc.line) from None
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, file) from None
    except yaml.YAMLError as exc:
        raise fail(f"YAML error: {type(exc).__name__}") from None
    except Exception as exc:
        # PyYAML's constructors raise whatever they hit on a value they cannot build (`!!int ''`:
        # IndexError, `!!timestamp 2001-02-30`: ValueError, a 5000-digit int: ValueError); this is
        # the one seam where that becomes ours.
        raise fail(f"a value cannot be read ({type(exc).__name__})") from None
    finally:
        loader.dispose()
    if data is None:
        raise fail("empty document", title="invalid configuration")
    if not isinstance(data, dict):
        hint = ""
        if isinstance(data, str) and file is None and "\n" not in text.strip():
            hint = " (if this was meant to be a file path: no such file)"
        raise fail(
            f"expected a mapping at the top level, got {yaml_type_name(data)}{hint}",
            line=node.start_mark.line + 1,
            title="invalid configuration",
        )
    return data, LineMap(file=file, lines=lines)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node, limits: YamlLimits, fail: Any) -> None:
    """Refuse a document whose expanded size or depth is beyond the limits, or that refers to itself.

    Sizes and depths are computed once per distinct node (aliases share nodes), iteratively, so a
    billion-laughs document costs as much as its text. Merge keys (``<<: [*a, *a]``) count like
    any other child: PyYAML copies the merged pairs.
    """
    measured: dict[int, tuple[int, int]] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            children = [measured[id(child)] for child in _children(node)]
            size = 1 + sum(size for size, _ in children)
            depth = 1 + max((depth for _, depth in children), default=0)
            open_nodes.discard(key)
            measured[key] = (size, depth)
            line = node.start_mark.line + 1
            if size > limits.max_nodes:
                raise fail(
                    f"more than {limits.max_nodes} values once aliases are expanded (YamlLimits.max_nodes)",
                    line,
                )
            if depth > limits.max_depth:
                raise fail(
                    f"nested deeper than {limits.max_depth} levels once aliases are expanded "
                    "(YamlLimits.max_depth)",
                    line,
                )
            continue
        if key in measured:
            continue
        if key in open_nodes:
            raise fail(
                "an alias refers to a node that contains it (recursive structure)", node.start_mark.line + 1
            )
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in measured)


def _syntax_error(exc: yaml.MarkedYAMLError, file: str | None) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    # PyYAML splits its sentences: context ("while parsing a block mapping") then problem.
    message = "YAML syntax error: " + (
        ", ".join(filter(None, [exc.context, exc.problem])) or "invalid syntax"
    )
    if mark is not None:
        message += f" at column {mark.column + 1}"
    if "'\\t'" in (exc.problem or ""):
        message += " (indent with spaces, not tabs)"
    line = mark.line + 1 if mark is not None else None
    return ConfigError([ConfigIssue(path="", message=message, file=file, line=line)], "invalid YAML")


def _walk(root: yaml.Node, file: str | None) -> tuple[dict[tuple[str, ...], int], list[ConfigIssue]]:
    lines: dict[tuple[str, ...], int] = {}
    duplicates: list[ConfigIssue] = []

    def visit(node: yaml.Node, path: tuple[str, ...], active: frozenset[int]) -> None:
        if id(node) in active:  # recursive alias (already refused by _check_expansion)
            return
        active = active | {id(node)}
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else f"<{key_node.tag}>"
                line = key_node.start_mark.line + 1
                child = (*path, key)
                if key in seen:
                    where = ".".join(child)
                    duplicates.append(
                        ConfigIssue(
                            path=where,
                            message=f"duplicate key {key!r} (first defined on line {seen[key]})",
                            file=file,
                            line=line,
                        )
                    )
                    continue
                seen[key] = line
                lines[child] = line
                visit(value_node, child, active)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                child = (*path, str(index))
                lines[child] = item.start_mark.line + 1
                visit(item, child, active)

    visit(root, (), frozenset())
    return lines, duplicates
