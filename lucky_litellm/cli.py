"""`lucky-litellm`: validate configs, resolve specs, call models, run the offline demo,
inspect tiers, rollout flags, circuit breakers and stats.

Errors that come from the user's input (a bad file, a bad spec) are printed as one readable
block and exit with status 1; a traceback means a bug in lucky_litellm.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .errors import LuckyError, UnknownUserError

if TYPE_CHECKING:
    from .yaml_loader import LineMap


@contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
    except UnknownUserError as exc:  # its message names the library call; name the CLI's ways
        click.secho(
            f"error: no experiments for user {exc.user_id!r}: pass --user-config FILE, or list the "
            "user under `users:` in the models file (--config)",
            fg="red",
            err=True,
        )
        sys.exit(1)
    except LuckyError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)


def _models(config: str | None) -> Any:
    from .config import load_models_config
    from .registry import Models, default_models, set_default_models

    if config:
        models = Models(load_models_config(Path(config)))
        set_default_models(models)
        return models
    return default_models()


TABLE_WIDTH = 100
"""Width of tables printed to a file or pipe (a terminal's own width is used otherwise)."""
MAX_UNWRAPPED = 32
GUARD_TABLE_WIDTH = 130
"""Width of `rollout guard status` printed to a file or pipe: its charts need the room."""


def print_table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    *,
    title: str | None = None,
    width: int | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    """A rich table whose cells wrap at word boundaries instead of being cut; plain text (no
    colour codes) when the output is not a terminal, so it reads the same in CI logs. A header
    is never split or cut: each column is at least as wide as its header (`headers` renames a
    column's header, e.g. to keep a wide table within 100 columns)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from .tables import chrome_width, fit_columns

    console = Console(width=width)
    if width is None and not console.is_terminal:
        console = Console(width=TABLE_WIDTH)
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    cells = [[_cell(row.get(column), list_separator="\n") for column in columns] for row in rows]
    names = [(headers or {}).get(column, column).upper() for column in columns]
    widths = [
        max([len(header)] + [len(line) for row in cells for line in row[index].splitlines()])
        for index, header in enumerate(names)
    ]
    for header in names:
        table.add_column(header, overflow="fold")
    # short values (names, numbers) stay on one line while long text wraps
    preferred = [min(natural, MAX_UNWRAPPED) for natural in widths]
    if width is None and not console.is_terminal:  # a file or pipe: as wide as short values need
        console = Console(width=max(TABLE_WIDTH, sum(preferred) + chrome_width(table)))
    fit_columns(table, console.width, widths, [len(header) for header in names], preferred)
    for row in cells:
        table.add_row(*row)
    console.print(table)


def _cell(value: Any, list_separator: str = ", ") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".") if value < 1 else f"{value:.1f}"
    if isinstance(value, list | tuple):
        return list_separator.join(str(v) for v in value)
    return str(value)


@click.group()
@click.option(
    "--config",
    "config",
    envvar="LUCKY_MODELS_CONFIG",
    type=click.Path(dir_okay=False),
    help="models.yaml with providers, tiers, users and rollout (env LUCKY_MODELS_CONFIG).",
)
@click.option(
    "--otlp", envvar="LUCKY_OTLP_ENDPOINT", help="Send traces and metrics to this OTLP/HTTP endpoint."
)
@click.version_option(package_name="lucky-litellm")
@click.pass_context
def main(ctx: click.Context, config: str | None, otlp: str | None) -> None:
    """Model tiers, experiments and strategies on top of LiteLLM."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    ctx.obj = {"config": config}
    if otlp:
        from .telemetry import configure

        configure(otlp_endpoint=otlp, service_name="lucky-litellm-cli")


_KIND_NAMES = {
    "user": "user experiments",
    "models": "registry config",
    "proxy": "LiteLLM proxy config: lucky/ groups, handler and hook",
}


@main.command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--tiers", "check_tiers", is_flag=True, help="Also validate the tier configuration.")
@click.pass_context
def validate(ctx: click.Context, files: tuple[str, ...], check_tiers: bool) -> None:
    """Validate user experiment configs, models.yaml files and LiteLLM proxy configs (lucky's
    parts of them); lists every problem with its line."""
    from .validation import check_file

    if not files and not check_tiers:
        raise click.UsageError("give one or more FILES, or --tiers")
    failed = False
    for file in files:
        try:
            # user configs are resolved against the registry in use (--config, else the defaults)
            registry = ctx.obj["config"]
            report = check_file(Path(file), Path(registry) if registry else None)
        except LuckyError as exc:
            failed = True
            click.secho(f"✗ {file}", fg="red")
            click.echo(str(exc))
        else:
            click.secho(f"✓ {file}", fg="green", nl=False)
            click.echo(f"  ({_KIND_NAMES[report.kind]})")
            for warning in report.warnings:
                click.secho(f"  ! {warning}", fg="yellow")
    if check_tiers:
        from .tiers import build_tier_config, print_validation_results, validate_tier_config

        with _user_errors():
            models = _models(ctx.obj["config"]) if ctx.obj["config"] else None
            table = models.tiers if models else build_tier_config()
            result = validate_tier_config(table)
        print_validation_results(result)
        failed = failed or not result.success
    sys.exit(1 if failed else 0)


@main.command()
@click.argument("spec")
@click.option("--user-config", type=click.Path(dir_okay=False), help="YAML experiments for the spec's user.")
@click.option("--user-id", help="Caller's user id (for tier: specs; defaults to the spec's user).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.pass_context
def resolve(
    ctx: click.Context, spec: str, user_config: str | None, user_id: str | None, as_json: bool
) -> None:
    """Show what SPEC would run: strategy, models, deadline, cost bound. Nothing is called, so
    models of disabled providers are shown too, marked with what would enable them."""
    from .spec import parse_spec

    with _user_errors():
        models = _models(ctx.obj["config"])
        parsed = parse_spec(spec)
        if user_config:
            if parsed.user_id is None:
                raise click.UsageError("--user-config needs a user:<id> spec")
            models.load_user_config(parsed.user_id, Path(user_config))
        plan = models.preview(parsed)
    described = plan.describe()
    described["disabled"] = described.pop("skipped")
    if as_json:
        click.echo(json.dumps({**described, "runnable": bool(plan.targets)}, indent=2))
        return
    width = max(map(len, described))
    for key, value in described.items():
        if key == "disabled":
            for entry in value:
                click.secho(f"{'disabled':>{width}}: {entry['model']} ({entry['reason']})", fg="yellow")
        else:
            click.echo(f"{key:>{width}}: {_cell(value)}")
    if not plan.targets:
        click.secho(
            "nothing would run: every model's provider is disabled (`complete` would fail with "
            "NoModelsAvailableError). Offline, try `lucky-litellm dev`.",
            fg="yellow",
        )


@main.command()
@click.argument("spec")
@click.argument("prompt")
@click.option("--user-id", help="Caller's user id (budget, concurrency, rollout).")
@click.option("--user-config", type=click.Path(dir_okay=False), help="YAML experiments for the spec's user.")
@click.option("--max-tokens", type=click.IntRange(min=1), help="Passed to litellm.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds to wait for the answer, retries included (default: the tier's or experiment's).",
)
@click.option("--stream", is_flag=True, help="Print the answer as it streams.")
@click.option("--json", "as_json", is_flag=True, help="Print the routing record as JSON after the answer.")
@click.pass_context
def complete(
    ctx: click.Context,
    spec: str,
    prompt: str,
    user_id: str | None,
    user_config: str | None,
    max_tokens: int | None,
    timeout: float | None,
    stream: bool,
    as_json: bool,
) -> None:
    """Send PROMPT to SPEC through litellm and print the answer and how it was routed.

    Exits 1 with the reason on stderr when the call fails (every model failed, deadline passed,
    no model available, bad spec)."""
    import asyncio
    import dataclasses

    from .routing import routing_of
    from .spec import parse_spec

    kwargs: dict[str, Any] = {"user_id": user_id}
    if max_tokens:
        kwargs["max_tokens"] = max_tokens

    async def run() -> Any:
        import litellm  # noqa: F401  (loaded before the deadline starts, not inside it)

        models = _models(ctx.obj["config"])
        parsed = parse_spec(spec)
        if user_config and parsed.user_id:
            models.load_user_config(parsed.user_id, Path(user_config))
        plan = models.resolve(parsed, user_id=user_id)
        if timeout is not None:
            plan = dataclasses.replace(plan, timeout_s=min(plan.timeout_s, timeout))
        messages = [{"role": "user", "content": prompt}]
        with _waiting(f"{spec}: {plan.strategy} over {', '.join(plan.models)}", plan.timeout_s):
            result = await models.run_plan(plan, messages, stream=stream, **kwargs)
            if not stream:
                click.echo(result.choices[0].message.content)
                return result
            async for chunk in result:
                if chunk.choices and chunk.choices[0].delta.content:
                    click.echo(chunk.choices[0].delta.content, nl=False)
        click.echo()
        return result

    with _user_errors(), _call_errors():
        response = asyncio.run(run())
    routing = routing_of(response)
    if as_json:
        click.echo(json.dumps(routing.as_dict(), indent=2))
    else:
        click.secho(
            f"[{routing.strategy}] winner={routing.winner} cost=${routing.cost_usd:.6f} "
            f"latency={routing.latency_ms:.0f}ms attempts="
            + " ".join(f"{a.model}={a.outcome}" for a in routing.attempts),
            fg="cyan",
            err=True,
        )


@contextmanager
def _call_errors() -> Iterator[None]:
    """Errors that are not lucky_litellm's own (litellm's, on a path without a strategy) still
    end in one readable line and status 1, never a traceback."""
    try:
        yield
    except KeyboardInterrupt:
        click.secho("interrupted", fg="red", err=True)
        sys.exit(130)
    except Exception as exc:
        if not type(exc).__module__.startswith(("litellm", "openai", "httpx", "aiohttp")):
            raise
        from .errors import redact

        click.secho(f"error: {type(exc).__name__}: {redact(str(exc))}", fg="red", err=True)
        sys.exit(1)


@contextmanager
def _waiting(what: str, timeout_s: float) -> Iterator[None]:
    """A spinner on stderr while a call is in flight, only when stderr is a terminal."""
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        yield
        return
    with console.status(f"{what} (deadline {timeout_s:g} s)", spinner="dots"):
        yield


def _milliseconds(value: float, given: str, option: str) -> float:
    """A delay in milliseconds: finite and not negative (nan would pass a plain range check)."""
    if not math.isfinite(value) or value < 0:
        raise click.BadParameter(
            f"expected a finite number of milliseconds >= 0, got {given!r}", param_hint=option
        )
    return value


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option(
    "--port", type=int, default=0, show_default=True, help="Port of the fake upstream (0: any free port)."
)
@click.option(
    "--latency-ms",
    type=float,
    default=0.0,
    callback=lambda ctx, param, value: _milliseconds(value, str(value), "--latency-ms"),
    help="Latency of every answer.",
)
@click.option(
    "--slow",
    "slow",
    multiple=True,
    metavar="MODEL:MS",
    help="Answer MODEL (as the upstream sees it, e.g. llama3.2) after MS milliseconds (repeatable).",
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def dev(port: int, latency_ms: float, slow: tuple[str, ...], command: tuple[str, ...]) -> None:
    """Offline first calls: start a fake OpenAI-compatible upstream and point the `local`
    provider (and every tier) at it.

    Without COMMAND it serves until Ctrl-C and prints the variables to export in another shell.
    With COMMAND (after `--`) it runs COMMAND with them set, then stops:

        lucky-litellm dev -- lucky-litellm complete tier:fast "hi"
    """
    from .dev import OFFLINE_COST_MAP, dev_environment, dev_upstream, run_with, serve_forever, stop_signal

    delays: dict[str, float] = {}
    for entry in slow:
        model, sep, ms = entry.rpartition(":")
        try:
            delay = float(ms)
        except ValueError:
            raise click.BadParameter(f"expected MODEL:MS, got {entry!r}", param_hint="--slow") from None
        if not sep or not model:
            raise click.BadParameter(f"expected MODEL:MS, got {entry!r}", param_hint="--slow")
        delays[model] = _milliseconds(delay, entry, "--slow")
    click.echo("starting the fake upstream ...", err=True)
    upstream = ExitStack()
    try:
        base_url = upstream.enter_context(dev_upstream(port=port, latency_ms=latency_ms, slow=delays))
    except OSError as exc:
        raise click.BadParameter(
            f"cannot listen on 127.0.0.1:{port} ({exc.strerror or exc}); "
            "pick another port, or 0 for any free one",
            param_hint="--port",
        ) from None
    with upstream:
        environ = {**dev_environment(base_url), **OFFLINE_COST_MAP}
        if command:
            click.echo(f"fake upstream at {base_url}; running: {' '.join(command)}", err=True)
            status = run_with(command, base_url)
            if status == 127 and shutil.which(command[0]) is None:
                click.secho(f"error: command not found: {command[0]}", fg="red", err=True)
            sys.exit(status)
        with stop_signal() as stop:  # before the variables: a Ctrl-C right after them stops cleanly
            click.echo(f"fake upstream at {base_url}: any local/<model> answers. In another shell:\n")
            for name, value in environ.items():
                click.echo(f"  export {name}={value}")
            click.echo(
                '\nthen e.g. `lucky-litellm complete tier:fast "hi"`. Ctrl-C stops the upstream.', err=True
            )
            serve_forever(stop)


@main.command()
def demo() -> None:
    """Offline demo: a fake OpenAI-compatible upstream answers tiers, experiments and strategies."""
    from .demo import run_demo

    sys.exit(run_demo())


@main.command()
@click.pass_context
def tiers(ctx: click.Context) -> None:
    """Table of tiers: model, strategy and price per 1M tokens. Models whose provider is
    disabled are marked ✗, with what would enable it below the table."""
    from .spec import parse_spec
    from .tiers import tier_table_rows

    with _user_errors():
        models = _models(ctx.obj["config"])
        rows = tier_table_rows(models.tiers)
    disabled: dict[str, str] = {}

    def mark(model: str) -> str:
        provider = parse_spec(model).provider if "/" in model else None
        reason = models.providers.why_disabled(provider) if provider in models.providers.providers else None
        if reason is None:
            return model
        disabled[str(provider)] = reason
        return f"{model} ✗"

    for row in rows:
        row["models"] = [mark(model) for model in row["models"]]
        row["$/1M in"], row["$/1M out"] = row.pop("input_per_1m"), row.pop("output_per_1m")
    print_table(rows, ["tier", "strategy", "models", "aliases", "$/1M in", "$/1M out"])
    for provider, reason in disabled.items():
        click.secho(f"✗ {provider}: {reason}", fg="yellow")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """Per-user spend against costLimit from the configured state store (shared with Redis)."""
    with _user_errors():
        models = _models(ctx.obj["config"])
        rows = []
        for user_id in models.users:
            limit = models.user_config(user_id).defaults.cost_limit
            spent = models.store.spent(user_id)
            rows.append(
                {
                    "user": user_id,
                    "spent_usd": spent,
                    "cost_limit": limit,
                    "used": f"{spent / limit:.0%}" if limit else "-",
                }
            )
    if as_json:
        click.echo(json.dumps({"users": rows, "process": models.stats()}, indent=2))
        return
    print_table(rows, ["user", "spent_usd", "cost_limit", "used"])


@main.group()
@click.option(
    "--state-url",
    envvar="LUCKY_STATE_URL",
    help="The shared state store, e.g. redis://127.0.0.1:6379/0 (env LUCKY_STATE_URL; else the "
    "models config's rollout.stateUrl).",
)
@click.pass_context
def rollout(ctx: click.Context, state_url: str | None) -> None:
    """Rollout flags in the shared store (LUCKY_STATE_URL=redis://...): every process and replica
    using that store sees a change within a second. Without it, flags live in each process only."""
    ctx.find_root().obj["state_url"] = state_url
    _quiet_outage(ctx)


class _NoOutageWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "lucky_state_outage", False)


def _quiet_outage(ctx: click.Context) -> None:
    """Drop the state store's outage warning while this command runs: it speaks of a serving
    process's fallbacks (last known flags, the budget outage policy), and the CLI reports an
    unreachable store in its own words."""
    state_logger = logging.getLogger("lucky_litellm.state")
    quiet = _NoOutageWarning()
    state_logger.addFilter(quiet)
    ctx.call_on_close(lambda: state_logger.removeFilter(quiet))


def _set_state_url(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:  # given after a subcommand: it wins over the group's (and the env's)
        ctx.find_root().ensure_object(dict)["state_url"] = value


_STATE_URL = click.option(
    "--state-url",
    expose_value=False,
    callback=_set_state_url,
    help="The shared state store, e.g. redis://127.0.0.1:6379/0 (overrides `rollout --state-url` and "
    "LUCKY_STATE_URL).",
)
"""`--state-url` on each rollout subcommand, so it may follow the subcommand as well as precede it."""


def _rollout_models(ctx: click.Context) -> Any:
    """The registry of a rollout command, its state in the store `--state-url` names (if given)."""
    root = ctx.find_root().obj
    url = root.get("state_url")
    if not url or os.environ.get("LUCKY_STATE_URL") == url:
        return _models(root["config"])
    from .config import ModelsConfig, load_models_config
    from .registry import Models, set_default_models

    config = load_models_config(Path(root["config"])) if root["config"] else ModelsConfig()
    models = Models(config, environ={**os.environ, "LUCKY_STATE_URL": url})
    set_default_models(models)
    return models


def _print_status() -> bool:
    """Print the flags; False when the store could not be read (they are not the shared ones)."""
    from . import rollout as flags

    status = flags.rollout_status()
    for key, value in status.items():
        click.echo(f"{key:>10}: {_cell(value)}")
    return bool(status["reachable"])


_LOCAL = click.option(
    "--local",
    is_flag=True,
    help="Without a shared store, apply the change anyway (it lives only in this CLI process).",
)


def _change_flags(ctx: click.Context, local: bool, change: Callable[[], object]) -> None:
    """Apply a flag change to the shared store; refuse to pretend when there is none."""
    with _user_errors():
        models = _rollout_models(ctx)
        shared = models.state.shared
        if not shared and not local:
            click.secho(
                "error: no shared state store (set LUCKY_STATE_URL=redis://... or rollout.stateUrl): "
                "this change would affect nothing outside this CLI process, which exits now. "
                "Nothing was changed (pass --local to apply it to this process anyway).",
                fg="red",
                err=True,
            )
            sys.exit(1)
        change()
        _print_status()
    if not shared:
        click.secho(
            "note: applied in this CLI process only; no other process sees it.",
            fg="yellow",
            err=True,
        )


@rollout.command(name="status")
@_STATE_URL
@click.pass_context
def rollout_status(ctx: click.Context) -> None:
    """Show the flags and the store they are read from."""
    with _user_errors():
        _rollout_models(ctx)
        if not _print_status():
            click.secho(
                "error: the state store could not be read (see store above): these are not the shared flags",
                fg="red",
                err=True,
            )
            sys.exit(1)


@rollout.command(name="enable")
@_STATE_URL
@_LOCAL
@click.pass_context
def rollout_enable(ctx: click.Context, local: bool) -> None:
    """Full rollout: every user on the registry path (the percentage becomes 100)."""
    from . import rollout as flags

    _change_flags(ctx, local, flags.enable_models)


@rollout.command(name="disable")
@_STATE_URL
@_LOCAL
@click.pass_context
def rollout_disable(ctx: click.Context, local: bool) -> None:
    """Kill switch: every call, test users included, takes the legacy path."""
    from . import rollout as flags

    _change_flags(ctx, local, flags.disable_models)


@rollout.command(name="percent")
@_STATE_URL
@click.argument("percent", type=float)
@_LOCAL
@click.pass_context
def rollout_percent(ctx: click.Context, percent: float, local: bool) -> None:
    """Gradual rollout: PERCENT (0-100) of users on the registry path; lifts a kill switch."""
    from . import rollout as flags

    _change_flags(ctx, local, lambda: flags.set_rollout_percent(percent))


@rollout.command(name="add-user")
@_STATE_URL
@click.argument("user_id")
@_LOCAL
@click.pass_context
def rollout_add_user(ctx: click.Context, user_id: str, local: bool) -> None:
    """Always route USER_ID through the registry (while models are enabled)."""
    from . import rollout as flags

    _change_flags(ctx, local, lambda: flags.add_test_user(user_id))


@rollout.command(name="remove-user")
@_STATE_URL
@click.argument("user_id")
@_LOCAL
@click.pass_context
def rollout_remove_user(ctx: click.Context, user_id: str, local: bool) -> None:
    """Stop treating USER_ID as a test user."""
    from . import rollout as flags

    _change_flags(ctx, local, lambda: flags.remove_test_user(user_id))


@rollout.command(name="history")
@_STATE_URL
@click.option("--limit", type=click.IntRange(min=1), help="Only the last N events.")
@click.option("--json", "as_json", is_flag=True, help="Print the events as JSON lines.")
@click.pass_context
def rollout_history(ctx: click.Context, limit: int | None, as_json: bool) -> None:
    """Guarded-rollout events (start, advance, rollback, complete, stop), oldest first, with the
    figures each decision was based on (`--json`)."""
    from .guard.control import guard_history

    with _user_errors():
        models = _rollout_models(ctx)
        events = guard_history(models=models, limit=limit)
    if as_json:
        for event in events:
            click.echo(json.dumps(event, sort_keys=True))
        return
    rows = [_history_row(event) for event in events]
    if not rows:
        click.echo(f"no guard events in {models.state.location}")
        return
    print_table(rows, ["at", "event", "stage", "percent", "calls", "figures"])


def _history_row(event: dict[str, Any]) -> dict[str, Any]:
    import time

    figures = (event.get("decision") or {}).get("figures") or []
    calls = event.get("calls") or {}
    percent = event.get("percent")
    action = str(event.get("action", "?"))
    return {
        "at": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(event.get("at", 0)))) + "Z",
        "event": action,
        "stage": int(event["stage_index"]) + 1 if "stage_index" in event else "-",
        "percent": "-" if percent is None else f"{percent:g} %",
        "calls": [f"{k} {v}" for k, v in sorted(calls.items())] or "-",
        "figures": [f"{f.get('metric')} {f.get('verdict')}" for f in figures if isinstance(f, dict)] or "-",
    }


@rollout.group(name="guard")
@_STATE_URL
def guard() -> None:
    """Guarded rollout: the registry path moves through stages (default 1, 5, 25, 50, 100 %) while
    its error rate, p95 latency, cost and user metrics are compared with the legacy path's; it
    advances when every metric is shown not worse than its threshold and rolls back (the kill
    switch) as soon as one is shown worse. Serving processes sharing the store do the work."""


def _load_policy_file(path: str) -> tuple[dict[str, Any], LineMap]:
    """A policy file: the policy's fields, or a models.yaml whose ``rollout: guard:`` holds them,
    with the lines they were written on (so errors read ``file.yaml:7``, as ``validate``'s do)."""
    from .yaml_loader import load_yaml

    raw, lines = load_yaml(Path(path))
    rollout_section = raw.get("rollout")
    if isinstance(rollout_section, dict) and isinstance(rollout_section.get("guard"), dict):
        return dict(rollout_section["guard"]), lines.under(("rollout", "guard"))
    return raw, lines


@guard.command(name="start")
@_STATE_URL
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False), help="YAML/JSON policy file.")
@click.option("--stages", help="Comma-separated percentages, e.g. 1,5,25,50,100.")
@click.option("--min-calls", type=int, help="Calls each path needs in a stage before it may advance.")
@click.option("--min-seconds", type=float, help="Seconds each stage lasts at least before it may advance.")
@click.option(
    "--threshold",
    "thresholds",
    multiple=True,
    metavar="METRIC=LIMIT",
    help="Regression threshold, e.g. error_rate=+1pp, p95_latency=+20%, feedback.thumbs_up=-0.05 "
    "(repeatable).",
)
@_LOCAL
@click.pass_context
def guard_start(
    ctx: click.Context,
    policy_file: str | None,
    stages: str | None,
    min_calls: int | None,
    min_seconds: float | None,
    thresholds: tuple[str, ...],
    local: bool,
) -> None:
    """Start a guarded rollout at its first stage (options override the policy file, which
    overrides the models config's rollout.guard)."""
    from pydantic.alias_generators import to_camel

    from .guard.control import GuardError, as_policy, start_guard
    from .guard.policy import DEFAULT_METRICS

    def merge(into: dict[str, Any], fields: dict[str, Any]) -> None:
        into.update({to_camel(str(key)): value for key, value in fields.items()})  # one spelling

    with _user_errors():
        models = _rollout_models(ctx)
        raw: dict[str, Any] = {}
        source = None
        configured = getattr(models.config.rollout, "guard", None)
        if configured is not None:
            merge(raw, configured.model_dump(mode="json", exclude_none=True))
        lines = None
        if policy_file:
            fields, lines = _load_policy_file(policy_file)
            merge(raw, fields)
            source = policy_file
        if stages is not None:
            try:
                raw["stages"] = [float(p) for p in stages.split(",") if p.strip()]
            except ValueError:
                raise GuardError(
                    f"--stages: expected percentages like 1,5,25,50,100, got {stages!r}"
                ) from None
        if min_calls is not None:
            raw["minCalls"] = min_calls
        if min_seconds is not None:
            raw["minSeconds"] = min_seconds
        if thresholds:
            metrics = dict(raw.get("metrics") or DEFAULT_METRICS)
            for entry in thresholds:
                metric, sep, limit = entry.partition("=")
                if not sep or not metric.strip() or not limit.strip():
                    raise GuardError(
                        f"--threshold: expected METRIC=LIMIT such as error_rate=+1pp, got {entry!r}"
                    )
                metrics[metric.strip()] = limit.strip()
            raw["metrics"] = metrics
        policy = as_policy(raw, source=source, lines=lines)
        _require_shared(models, local, "serving processes would never see this guard")
        state = start_guard(policy, models=models)
    shares = ", ".join(f"{stage.percent:g}" for stage in policy.stages)
    click.echo(f"guard run {state.run_id} started: stage 1 at {policy.percent(0):g} % (stages {shares} %)")
    click.echo(f"store: {models.state.location}")


def _require_shared(models: Any, local: bool, why: str) -> None:
    if models.state.shared or local:
        return
    click.secho(
        f"error: no shared state store (set LUCKY_STATE_URL=redis://... or --state-url): {why}. "
        "Nothing was changed (pass --local to apply it to this CLI process anyway).",
        fg="red",
        err=True,
    )
    sys.exit(1)


@guard.command(name="stop")
@_STATE_URL
@_LOCAL
@click.pass_context
def guard_stop(ctx: click.Context, local: bool) -> None:
    """Stop the running guard; the rollout stays at its current percentage."""
    from .guard.control import stop_guard

    with _user_errors():
        models = _rollout_models(ctx)
        _require_shared(
            models,
            local,
            "a guard serving processes run lives in their shared store; there is none here to stop",
        )
        state = stop_guard(models=models)
        flags = models.state.flags.read()
    click.echo(
        f"guard run {state.run_id} stopped at stage {state.stage_index + 1}; the rollout stays at "
        f"{flags.percent:g} % ({'enabled' if flags.enabled else 'KILLED'})"
    )


@guard.command(name="status")
@_STATE_URL
@click.option(
    "--html", "html_file", type=click.Path(dir_okay=False), help="Also write the charts to this HTML file."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def guard_status_command(ctx: click.Context, html_file: str | None, as_json: bool) -> None:
    """Per stage: each metric's difference (registry - legacy) and its confidence interval,
    drawn against the threshold; the current stage's figures are computed now."""
    from rich.console import Console

    from .guard.control import guard_status
    from .guard.report import render_html, render_terminal

    with _user_errors():
        models = _rollout_models(ctx)
        report = guard_status(models=models)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        console = Console()
        if not console.is_terminal:
            console = Console(width=GUARD_TABLE_WIDTH)
        render_terminal(report, console)
    if html_file:
        try:
            Path(html_file).write_text(render_html(report), encoding="utf-8")
        except OSError as exc:
            click.secho(
                f"error: --html {html_file}: cannot write it ({exc.strerror or exc})", fg="red", err=True
            )
            sys.exit(1)
        click.echo(f"wrote {html_file}", err=True)


@main.command()
@click.option(
    "--state-url",
    envvar="LUCKY_STATE_URL",
    help="The shared state store (env LUCKY_STATE_URL; default: rollout.stateUrl of --config).",
)
@click.option("--prefix", default="lucky:", show_default=True, help="Key prefix of the shared state.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def health(ctx: click.Context, state_url: str | None, prefix: str, as_json: bool) -> None:
    """Each model's circuit across the fleet: closed, open or half-open, failures in a row, the
    error rate over the window, and how long an open circuit still skips its model."""
    from .config import ModelsConfig, load_models_config
    from .health import Policy
    from .state import state_from_url
    from .state.health import RedisHealthStore

    _quiet_outage(ctx)
    with _user_errors():
        path = ctx.find_root().obj["config"]
        config = load_models_config(Path(path)) if path else ModelsConfig()
        url = state_url or config.rollout.state_url
        state = state_from_url(url, prefix=prefix)
        try:
            if state.connection is None:
                click.secho(
                    "error: no shared state store (set LUCKY_STATE_URL=redis://... or pass --state-url): "
                    "circuits then live inside each serving process (see Models.health())",
                    fg="red",
                    err=True,
                )
                sys.exit(1)
            circuits = RedisHealthStore(state.connection).read(Policy.from_config(config.health.circuit))
        finally:
            state.close()
    rows = [
        {
            "model": c.model,
            "state": c.state,
            "in_a_row": c.consecutive,
            "calls": c.calls,
            "failures": c.failures,
            "error_rate": f"{c.failures / c.calls:.0%}" if c.calls else "-",
            "cooldown_s": f"{c.open_for_s:.1f}" if c.state == "open" else "-",
            "probe": "in flight" if c.probe_held_s is not None else "-",
            "opens": c.opens,
            "last_failure": "-" if c.last_failure_ago_s is None else f"{c.last_failure_ago_s:.1f} s ago",
            "reason": c.reason or "-",
        }
        for c in circuits
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no model has been called through {state.location} yet")
        return
    columns = ["model", "state", "in_a_row", "calls", "failures", "error_rate", "cooldown_s", "probe"]
    print_table(rows, [*columns, "opens", "last_failure", "reason"], title="circuits", headers=HEALTH_HEADERS)


HEALTH_HEADERS = {
    "in_a_row": "streak",
    "failures": "fails",
    "error_rate": "err",
    "cooldown_s": "cool_s",
    "last_failure": "last_fail",
}
"""Short headers for `health`'s eleven columns, so they fit 100 columns unsplit (`--json` keeps
the field names)."""


if __name__ == "__main__":  # pragma: no cover
    main()
