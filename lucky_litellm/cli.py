"""`lucky-litellm`: validate configs, resolve specs, call models, run the offline demo,
inspect tiers, rollout flags and stats.

Errors that come from the user's input (a bad file, a bad spec) are printed as one readable
block and exit with status 1; a traceback means a bug in lucky_litellm.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from .errors import LuckyError


@contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
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


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """A plain aligned table: readable in a terminal and in CI logs alike."""
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max([len(column), *(len(line[i]) for line in cells)]) for i, column in enumerate(columns)]
    click.echo("  ".join(column.upper().ljust(widths[i]) for i, column in enumerate(columns)).rstrip())
    click.echo("  ".join("-" * width for width in widths))
    for line in cells:
        click.echo("  ".join(value.ljust(widths[i]) for i, value in enumerate(line)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".") if value < 1 else f"{value:.1f}"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
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


@main.command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--tiers", "check_tiers", is_flag=True, help="Also validate the tier configuration.")
@click.pass_context
def validate(ctx: click.Context, files: tuple[str, ...], check_tiers: bool) -> None:
    """Validate user experiment configs and models.yaml files; lists every problem."""
    from .config import load_models_config, load_user_config
    from .config.resolve import check_models_config, check_user_config, registry_tables
    from .yaml_loader import load_yaml

    if not files and not check_tiers:
        raise click.UsageError("give one or more FILES, or --tiers")
    failed = False
    for file in files:
        try:
            data, _ = load_yaml(Path(file))
            if "experiments" in data:
                # resolved against the registry in use (--config, else the defaults): typos fail here
                registry = ctx.obj["config"]
                tables = registry_tables(load_models_config(Path(registry)) if registry else None)
                check_user_config(load_user_config(Path(file)), *tables)
            else:
                check_models_config(load_models_config(Path(file)))
        except LuckyError as exc:
            failed = True
            click.secho(f"✗ {file}", fg="red")
            click.echo(str(exc))
        else:
            click.secho(f"✓ {file}", fg="green")
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
    """Show what SPEC would run: strategy, models, deadline, cost bound."""
    from .spec import parse_spec

    with _user_errors():
        models = _models(ctx.obj["config"])
        parsed = parse_spec(spec)
        if user_config:
            if parsed.user_id is None:
                raise click.UsageError("--user-config needs a user:<id> spec")
            models.load_user_config(parsed.user_id, Path(user_config))
        plan = models.resolve(parsed, user_id=user_id)
    described = plan.describe()
    if as_json:
        click.echo(json.dumps(described, indent=2))
        return
    for key, value in described.items():
        click.echo(f"{key:>15}: {_cell(value)}")


@main.command()
@click.argument("spec")
@click.argument("prompt")
@click.option("--user-id", help="Caller's user id (budget, concurrency, rollout).")
@click.option("--user-config", type=click.Path(dir_okay=False), help="YAML experiments for the spec's user.")
@click.option("--max-tokens", type=int, help="Passed to litellm.")
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
    stream: bool,
    as_json: bool,
) -> None:
    """Send PROMPT to SPEC through litellm and print the answer and how it was routed."""
    import asyncio

    from .routing import routing_of
    from .spec import parse_spec

    kwargs: dict[str, Any] = {"user_id": user_id}
    if max_tokens:
        kwargs["max_tokens"] = max_tokens

    async def run() -> Any:
        models = _models(ctx.obj["config"])
        parsed = parse_spec(spec)
        if user_config and parsed.user_id:
            models.load_user_config(parsed.user_id, Path(user_config))
        messages = [{"role": "user", "content": prompt}]
        if not stream:
            response = await models.complete(parsed, messages, **kwargs)
            click.echo(response.choices[0].message.content)
            return response
        result = await models.complete(parsed, messages, stream=True, **kwargs)
        async for chunk in result:
            if chunk.choices and chunk.choices[0].delta.content:
                click.echo(chunk.choices[0].delta.content, nl=False)
        click.echo()
        return result

    with _user_errors():
        response = asyncio.run(run())
    routing = routing_of(response)
    if as_json:
        click.echo(json.dumps(routing.as_dict(), indent=2))
    else:
        click.secho(
            f"[{routing.strategy}] winner={routing.winner} cost=${routing.cost_usd:.6f} "
            f"latency={routing.latency_ms:.0f}ms attempts={len(routing.attempts)}",
            fg="cyan",
            err=True,
        )


@main.command()
def demo() -> None:
    """Offline demo: a fake OpenAI-compatible upstream answers tiers, experiments and strategies."""
    from .demo import run_demo

    sys.exit(run_demo())


@main.command()
@click.pass_context
def tiers(ctx: click.Context) -> None:
    """Table of tiers: model, strategy and price per 1M tokens."""
    from .tiers import tier_table_rows

    with _user_errors():
        models = _models(ctx.obj["config"])
        rows = tier_table_rows(models.tiers)
    columns = list(rows[0]) if rows else ["tier"]
    print_table(rows, columns)


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
def rollout() -> None:
    """Rollout flags in the shared store (LUCKY_STATE_URL=redis://...): every process and replica
    using that store sees a change within a second. Without it, flags live in each process only."""


def _print_status() -> None:
    from . import rollout as flags

    status = flags.rollout_status()
    for key, value in status.items():
        click.echo(f"{key:>10}: {_cell(value)}")


_LOCAL = click.option(
    "--local",
    is_flag=True,
    help="Without a shared store, apply the change anyway (it lives only in this CLI process).",
)


def _change_flags(ctx: click.Context, local: bool, change: Callable[[], object]) -> None:
    """Apply a flag change to the shared store; refuse to pretend when there is none."""
    with _user_errors():
        models = _models(ctx.find_root().obj["config"])
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
@click.pass_context
def rollout_status(ctx: click.Context) -> None:
    """Show the flags and the store they are read from."""
    with _user_errors():
        _models(ctx.find_root().obj["config"])
        _print_status()


@rollout.command(name="enable")
@_LOCAL
@click.pass_context
def rollout_enable(ctx: click.Context, local: bool) -> None:
    """Full rollout: every user on the registry path (the percentage becomes 100)."""
    from . import rollout as flags

    _change_flags(ctx, local, flags.enable_models)


@rollout.command(name="disable")
@_LOCAL
@click.pass_context
def rollout_disable(ctx: click.Context, local: bool) -> None:
    """Kill switch: every call, test users included, takes the legacy path."""
    from . import rollout as flags

    _change_flags(ctx, local, flags.disable_models)


@rollout.command(name="percent")
@click.argument("percent", type=float)
@_LOCAL
@click.pass_context
def rollout_percent(ctx: click.Context, percent: float, local: bool) -> None:
    """Gradual rollout: PERCENT (0-100) of users on the registry path; lifts a kill switch."""
    from . import rollout as flags

    _change_flags(ctx, local, lambda: flags.set_rollout_percent(percent))


@rollout.command(name="add-user")
@click.argument("user_id")
@_LOCAL
@click.pass_context
def rollout_add_user(ctx: click.Context, user_id: str, local: bool) -> None:
    """Always route USER_ID through the registry (while models are enabled)."""
    from . import rollout as flags

    _change_flags(ctx, local, lambda: flags.add_test_user(user_id))


@rollout.command(name="remove-user")
@click.argument("user_id")
@_LOCAL
@click.pass_context
def rollout_remove_user(ctx: click.Context, user_id: str, local: bool) -> None:
    """Stop treating USER_ID as a test user."""
    from . import rollout as flags

    _change_flags(ctx, local, lambda: flags.remove_test_user(user_id))


if __name__ == "__main__":  # pragma: no cover
    main()
