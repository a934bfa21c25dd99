"""`lucky-litellm demo`: every feature once, offline, through real litellm calls.

A fake OpenAI-compatible upstream on 127.0.0.1 stands in for the providers, with one model made
slow, one made to fail and one that disagrees, so race, fallback and consensus have something to
show. The output is meant to be read by a person: rich tables no wider than 100 columns, one per
idea (each spec's plan and what every model did, the consensus votes, the rollout path of a few
users, the span tree of one call). litellm's own "Give Feedback" banners are switched off for the
duration of the demo only.
"""

from __future__ import annotations

import asyncio
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan
    from rich.console import Console

    from .registry import Models
    from .routing import Routing

WIDTH = 100
DEMO_USER = "demo-user"

DEMO_EXPERIMENTS = """
name: Demo experiments
experiments:
  fast:
    strategy: race
    providers: [openai/gpt-4.1-nano, groq/openai/gpt-oss-20b]
    timeout: 5000
  careful:
    strategy: fallback
    providers: [openai/gpt-4.1, openai/gpt-4.1-mini]
  vote:
    strategy: consensus
    providers: [openai/gpt-4.1-mini, openai/gpt-4o-mini, groq/openai/gpt-oss-120b]
    minAgreement: 0.6
  hedged:
    strategy: race
    providers: [groq/openai/gpt-oss-20b, openai/gpt-4.1-nano]
    hedgeAfter: 50
defaults:
  experiment: fast
  costLimit: 1.00
"""

SPECS = [
    "openai/gpt-4.1-mini",
    "tier:medium",
    "tier:fast",
    f"user:{DEMO_USER}",
    f"user:{DEMO_USER}:careful",
    f"user:{DEMO_USER}:vote",
    f"user:{DEMO_USER}:hedged",
    "tier:mediun",
]
TRACED_SPEC = f"user:{DEMO_USER}:careful"
TEST_USER = "researcher-1"
ROLLOUT_PERCENT = 25.0
_REASONS = {
    "test_user": "test user",
    "percent": f"inside the {ROLLOUT_PERCENT:.0f} %",
    "outside_percent": f"outside the {ROLLOUT_PERCENT:.0f} %",
    "killed": "kill switch",
    "anonymous": "no user id",
}
OUTCOME_STYLES = {
    "won": "bold green",
    "failed": "red",
    "cancelled": "yellow",
    "lost": "dim",
    "skipped": "dim",
}
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def run_demo(console: Console | None = None) -> int:
    """Run the demo and print it; returns the exit status."""
    from rich.console import Console

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    console = console or Console(width=min(WIDTH, Console().width) if Console().is_terminal else WIDTH)
    started = time.perf_counter()
    console.print(
        "[bold]lucky_litellm demo[/]: real litellm calls to a fake OpenAI-compatible server "
        "(no key, no network)"
    )
    with console.status("starting the fake upstream and loading litellm ..."), _quiet_litellm():
        from .testing import Behavior, FakeUpstream

        with FakeUpstream() as upstream:
            upstream.script("gpt-4.1", Behavior(status=503, error_message="overloaded (demo)"))
            upstream.script("openai/gpt-oss-20b", Behavior(latency_ms=400, content="slow answer"))
            upstream.script("gpt-4.1-mini", Behavior(latency_ms=20, content="Paris."))
            upstream.script("gpt-4o-mini", Behavior(latency_ms=30, content="paris"))
            upstream.script(
                "openai/gpt-oss-120b", Behavior(latency_ms=5, content="Lyon")
            )  # votes before the decision
            upstream.script("gpt-4.1-nano", Behavior(latency_ms=60, content="Paris, quickly."))
            results = asyncio.run(_run(upstream.base_url))
    _print_specs(console, results["specs"])
    _print_votes(console, results["votes"])
    _print_rollout(console, results["rollout"])
    _print_spans(console, results["spans"])
    console.print(
        f"\n[dim]{time.perf_counter() - started:.1f} s.[/] Your own first call, offline: "
        "[bold]lucky-litellm dev[/] (README: Try it offline)."
    )
    return 0


@contextmanager
def _quiet_litellm() -> Iterator[None]:
    """litellm prints a red "Give Feedback" banner for every failed call unless told not to.
    The demo's failures are on purpose: silence it for the demo, and put the setting back.

    Also silenced: "coroutine '...acompletion' was never awaited". litellm builds a call's
    coroutine in an executor thread; a race loser cancelled meanwhile (on a busy machine) leaves
    it unawaited, and the warning, a 155-column line from that thread, says nothing about the
    demo (the call never started, nothing leaks)."""
    import litellm

    previous = litellm.suppress_debug_info
    litellm.suppress_debug_info = True
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", r"coroutine '.*' was never awaited", RuntimeWarning)
            yield
    finally:
        litellm.suppress_debug_info = previous


def _registry(base_url: str, tracer_provider: Any = None, **extra: Any) -> Models:
    from .registry import Models
    from .telemetry import Telemetry

    environ = {"OPENAI_API_KEY": "sk-demo-openai", "GROQ_API_KEY": "sk-demo-groq"}
    config = {
        "provider": "openai",
        "providers": {
            "openai": {"apiBase": base_url},
            "groq": {"apiBase": base_url},
            "anthropic": {"enabled": False},
            "openrouter": {"enabled": False},
            "local": {"enabled": False},
        },
        "defaults": {"retries": 1},
        **extra,
    }
    return Models(config, environ=environ, telemetry=Telemetry(tracer_provider=tracer_provider))


async def _run(base_url: str) -> dict[str, Any]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from .errors import LuckyError
    from .routing import routing_of

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    models = _registry(base_url, tracer_provider)
    models.load_user_config(DEMO_USER, DEMO_EXPERIMENTS)

    specs: list[dict[str, Any]] = []
    votes: Routing | None = None
    spans: Sequence[ReadableSpan] = ()
    for spec in SPECS:
        exporter.clear()
        try:
            plan = models.resolve(spec)
            response = await models.complete(spec, MESSAGES, user_id=DEMO_USER, max_tokens=64)
        except LuckyError as exc:
            specs.append({"spec": spec, "error": f"{type(exc).__name__}: {exc}"})
            continue
        routing = routing_of(response)
        specs.append(
            {"spec": spec, "plan": plan, "routing": routing, "answer": response.choices[0].message.content}
        )
        if routing.strategy == "consensus":
            votes = routing
        if spec == TRACED_SPEC:
            spans = exporter.get_finished_spans()
    return {"specs": specs, "votes": votes, "rollout": await _rollout(base_url), "spans": spans}


async def _rollout(base_url: str) -> list[dict[str, Any]]:
    """The same call for a few users under a 25 % rollout with one test user."""
    from .bucketing import RolloutPolicy
    from .rollout import Rollout
    from .routing import routing_of

    rollout_config = {"percent": ROLLOUT_PERCENT, "testUsers": [TEST_USER]}
    rollout = Rollout(_registry(base_url, rollout=rollout_config))
    policy = RolloutPolicy(percent=ROLLOUT_PERCENT, test_users=frozenset([TEST_USER]))
    # two users inside the percentage and two outside (buckets are stable, so always the same ones)
    candidates = [f"user-{n}" for n in range(1, 200)]
    inside = [u for u in candidates if policy.decide(u).path == "registry"][:2]
    outside = [u for u in candidates if policy.decide(u).path == "legacy"][:2]
    rows = []
    for user in [TEST_USER, *sorted(inside + outside, key=candidates.index)]:
        routing = routing_of(await rollout.complete("tier:fast", MESSAGES, user_id=user, max_tokens=64))
        rows.append(
            {
                "user": user,
                "why": _REASONS.get(policy.decide(user).reason, policy.decide(user).reason),
                "path": routing.rollout_path,
                "strategy": routing.strategy,
                "answered": routing.winner,
            }
        )
    return rows


def _print_specs(console: Console, specs: list[dict[str, Any]]) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    console.print("\n[bold]Each spec: its plan (strategy, models in order), then what every model did[/]")
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("spec / strategy", no_wrap=True)
    table.add_column("model", no_wrap=True)
    table.add_column("outcome", no_wrap=True)
    table.add_column("answer", max_width=16)
    table.add_column("total", no_wrap=True, justify="right")
    errors = []
    for row in specs:
        if "error" in row:
            errors.append(row)
            continue
        plan, routing = row["plan"], row["routing"]
        outcomes = {attempt.model: attempt for attempt in routing.attempts}
        models, results = Text(), Text()
        for index, model in enumerate(plan.models):
            attempt = outcomes.get(model)
            outcome = attempt.outcome if attempt else "not run"
            detail = f" {attempt.latency_ms:.0f} ms" if attempt and outcome in ("won", "lost") else ""
            if attempt and outcome == "failed":
                status = getattr(attempt.exception, "status_code", None)
                detail = f" ({status})" if status else ""
            models.append(("\n" if index else "") + model)
            results.append(("\n" if index else "") + outcome + detail, style=OUTCOME_STYLES.get(outcome, ""))
        table.add_row(
            f"{row['spec']}\n[cyan]{_describe_plan(plan)}[/]",
            models,
            results,
            row["answer"],
            f"{routing.latency_ms:.0f} ms\n[dim]${routing.cost_usd:.6f}[/]",
            end_section=True,
        )
    console.print(table)
    for row in errors:
        console.print(Text(f"{row['spec']}: {row['error']}", style="red"))


def _describe_plan(plan: Any) -> str:
    extras = []
    if plan.hedge_after_s is not None:
        extras.append(f"hedge after {plan.hedge_after_s * 1000:.0f} ms")
    elif plan.hedging is not None:
        extras.append(f"hedge at p{plan.hedging.quantile * 100:g}")
    if plan.min_agreement is not None:
        extras.append(f"quorum {plan.min_agreement:.0%}")
    return ", ".join([plan.strategy, *extras])


def _print_votes(console: Console, routing: Routing | None) -> None:
    from rich import box
    from rich.table import Table

    from .consensus import normalise_answer

    if routing is None or not routing.votes:
        return
    console.print(f"\n[bold]Consensus votes of {routing.spec}[/]: agreement {routing.agreement or 0:.0%}")
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("answer")
    table.add_column("votes", justify="right")
    table.add_column("models")
    for answer, count in sorted(routing.votes.items(), key=lambda item: -item[1]):
        group = normalise_answer(answer)
        voters = [
            f"{a.model} [dim]{a.content!r}[/]"
            for a in routing.attempts
            if normalise_answer(a.content) == group
        ]
        table.add_row(answer, str(count), "\n".join(voters))
    console.print(table)


def _print_rollout(console: Console, rows: list[dict[str, Any]]) -> None:
    from rich import box
    from rich.table import Table

    console.print(
        f"\n[bold]Rollout at {ROLLOUT_PERCENT:.0f} % with test user {TEST_USER}[/]: the same tier:fast call"
    )
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("user", "why", "path", "strategy", "answered"):
        table.add_column(column)
    for row in rows:
        style = "green" if row["path"] == "registry" else "yellow"
        table.add_row(
            row["user"],
            row["why"],
            f"[{style}]{row['path']}[/]",
            row["strategy"],
            row["answered"],
        )
    console.print(table)
    console.print(
        "[dim]legacy = one plain litellm.acompletion on the tier's model; registry = the tier's strategy.[/]"
    )


_SPAN_ATTRIBUTES = (
    "lucky.strategy",
    "lucky.winner",
    "lucky.attempt.outcome",
    "error.type",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "lucky.cost.usd",
)


def _value(value: Any) -> str:
    return f"{value:.6f}" if isinstance(value, float) else str(value)


def _print_spans(console: Console, spans: Sequence[ReadableSpan]) -> None:
    from rich.tree import Tree

    if not spans:
        return
    by_parent: dict[int | None, list[ReadableSpan]] = {}
    ids = {span.context.span_id for span in spans if span.context is not None}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        parent = span.parent.span_id if span.parent is not None and span.parent.span_id in ids else None
        by_parent.setdefault(parent, []).append(span)

    def label(span: ReadableSpan) -> str:
        ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
        attributes = span.attributes or {}
        shown = [
            f"{key.rsplit('.', 1)[-1]}={_value(attributes[key])}"
            for key in _SPAN_ATTRIBUTES
            if key in attributes
        ]
        return f"[bold]{span.name}[/] {ms:.0f} ms  [dim]{'  '.join(shown)}[/]"

    def add(tree: Tree, span: ReadableSpan) -> None:
        branch = tree.add(label(span))
        for child in by_parent.get(span.context.span_id if span.context else None, []):
            add(branch, child)

    tree = Tree(f"[bold]Spans of one call[/] ({TRACED_SPEC}), as an OpenTelemetry exporter receives them")
    for root in by_parent.get(None, []):
        add(tree, root)
    console.print()
    console.print(tree)
