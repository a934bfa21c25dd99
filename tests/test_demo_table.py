"""The demo's spec table: each row's answer sits on the line of the model that gave it."""

from __future__ import annotations

from rich.console import Console

from lucky_litellm import Models
from lucky_litellm.demo import DEMO_EXPERIMENTS, _print_specs
from lucky_litellm.routing import Attempt, Routing

from .conftest import PLANTED_KEYS


class _Unavailable(Exception):
    status_code = 503


def test_a_fallbacks_answer_is_printed_on_the_winners_line_not_the_failed_models():
    """`make demo` printed `Paris.` next to `openai/gpt-4.1 failed (503)` in the careful row."""
    models = Models(environ=dict(PLANTED_KEYS))
    models.load_user_config("demo-user", DEMO_EXPERIMENTS)
    plan = models.resolve("user:demo-user:careful")
    assert plan.models == ["openai/gpt-4.1", "openai/gpt-4.1-mini"]
    routing = Routing(
        spec=plan.spec,
        strategy=plan.strategy,
        models=list(plan.models),
        winner="openai/gpt-4.1-mini",
        attempts=[
            Attempt("openai/gpt-4.1", "failed", exception=_Unavailable("down")),
            Attempt("openai/gpt-4.1-mini", "won", latency_ms=12),
        ],
    )
    console = Console(record=True, width=100, color_system=None)
    _print_specs(console, [{"spec": plan.spec, "plan": plan, "routing": routing, "answer": "Paris."}])
    lines = console.export_text().splitlines()
    failed = next(line for line in lines if "openai/gpt-4.1 " in line)
    won = next(line for line in lines if "openai/gpt-4.1-mini" in line)
    assert "failed (503)" in failed and "Paris." not in failed
    assert "won" in won and "Paris." in won
