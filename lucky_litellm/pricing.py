"""Every estimate and every cost: what a call may cost before it is made, what it did cost after.

One module prices everything so the same answer costs the same wherever it is priced: a
response, a stream (finished, closed early or cut), a race loser, an estimate for `maxCost` and a
budget reservation. Costs are always litellm's pricing of the usage the upstream reported (cached
and reasoning tokens included, `litellm.cost_per_token(usage_object=...)`, which is also how
litellm computes a whole response's `response_cost`), so a streamed answer costs what the same
answer costs whole. Models served by a free provider (`local`, ollama, ...) cost $0, whatever
their name: litellm would price `local/gpt-4.1-mini` at OpenAI's price.

Prompt tokens are counted with the tiktoken encoding litellm ships (`gpt-4o`), for every model:
for other families litellm would download a Hugging Face tokenizer, i.e. reach the network on the
request path. Estimates pad the count by `PROMPT_TOKEN_MARGIN`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .providers import Target

__all__ = [
    "DEFAULT_OUTPUT_TOKEN_ESTIMATE",
    "PROMPT_TOKEN_MARGIN",
    "Estimate",
    "completion_tokens_of_text",
    "cost_from_tokens",
    "cost_of_usage",
    "count_prompt_tokens",
    "estimate",
    "estimate_cost",
    "estimate_prompt_tokens",
    "fit_budget",
    "is_free",
    "max_output_tokens",
    "response_cost",
]

DEFAULT_OUTPUT_TOKEN_ESTIMATE = 512
"""Output tokens assumed for `maxCost` when the caller sets no `max_tokens`: a typical chat answer.
Budgets never use it: a reservation covers the most the call can really produce."""

PROMPT_TOKEN_MARGIN = 1.15

_OFFLINE_TOKENIZER_MODEL = "gpt-4o"
_FALLBACK_MAX_OUTPUT = 4096
"""Output bound assumed for a priced model whose cost map entry gives no maximum."""


def _free_providers() -> frozenset[str]:
    from .tiers import FREE_PROVIDERS

    return FREE_PROVIDERS


def is_free(target: Target | str) -> bool:
    """Whether calls to `target` cost nothing (a local runtime)."""
    if isinstance(target, str):
        provider = target.partition("/")[0]
        return provider in _free_providers()
    free = _free_providers()
    return target.provider in free or target.litellm_model.partition("/")[0] in free


def _model_of(target: Target | str) -> str:
    return target if isinstance(target, str) else target.litellm_model


# -- counting ---------------------------------------------------------------------------------


def count_prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """Prompt tokens as the tokenizer counts them, chars/4 for content it cannot count."""
    import litellm

    try:
        return int(litellm.token_counter(model=_OFFLINE_TOKENIZER_MODEL, messages=list(messages)))
    except Exception:
        text = sum(len(str(m.get("content") or "")) for m in messages)
        return text // 4 + 4 * len(messages)


def estimate_prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """Prompt tokens padded by `PROMPT_TOKEN_MARGIN`: an upper bound for reservations."""
    return math.ceil(count_prompt_tokens(messages) * PROMPT_TOKEN_MARGIN)


def completion_tokens_of_text(text: str) -> int:
    """Output tokens of a partial answer, counted as `litellm.stream_chunk_builder` does when the
    stream carried no usage (its `count_response_tokens` mode), with the offline tokenizer."""
    if not text:
        return 0
    import litellm

    try:
        return int(
            litellm.token_counter(model=_OFFLINE_TOKENIZER_MODEL, text=text, count_response_tokens=True)
        )
    except Exception:
        return max(1, len(text) // 4)


# -- prices -----------------------------------------------------------------------------------


def cost_from_tokens(target: Target | str, prompt_tokens: int, completion_tokens: int) -> float:
    """USD for a token count: $0 for free providers, litellm's cost map, else the upstream
    vendor's price for resellers (litellm's offline map has no OpenRouter entries), else 0."""
    if is_free(target):
        return 0.0
    model = _model_of(target)
    import litellm

    try:
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except Exception:
        from .tiers import model_price

        price = model_price(model)
        if price is None:
            return 0.0
        return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000
    return float(prompt_cost) + float(completion_cost)


def cost_of_usage(target: Target | str, usage: Any) -> float:
    """USD for a litellm `Usage` (a response's, or a stream's final one): cached-prompt and
    reasoning tokens priced the way litellm prices them, identical for streamed and whole answers."""
    if usage is None or is_free(target):
        return 0.0
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion = int(getattr(usage, "completion_tokens", 0) or 0)
    import litellm

    try:
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=_model_of(target), prompt_tokens=prompt, completion_tokens=completion, usage_object=usage
        )
    except Exception:
        return cost_from_tokens(target, prompt, completion)
    return float(prompt_cost) + float(completion_cost)


def response_cost(response: Any, target: Target | str) -> float:
    """USD of a whole (non-streamed) response, from its usage.

    litellm has already priced the response from the same usage object (`cost_of_usage` gives
    the same figure, which the tests check): that figure is reused, since pricing costs ~0.8 ms
    of CPU per call. A free provider is $0 whatever litellm thought."""
    if is_free(target):
        return 0.0
    hidden = getattr(response, "_hidden_params", None) or {}
    cost = hidden.get("response_cost")
    if isinstance(cost, int | float) and cost > 0:
        return float(cost)
    return cost_of_usage(target, getattr(response, "usage", None))


def max_output_tokens(target: Target | str) -> int | None:
    """The most output tokens the model can produce (litellm's model info), None if unknown."""
    import litellm

    try:
        info = litellm.get_model_info(_model_of(target))
    except Exception:
        return None
    value = info.get("max_output_tokens") or info.get("max_tokens")
    return int(value) if isinstance(value, int | float) and value > 0 else None


def estimate_cost(target: Target | str, prompt_tokens: int, max_output: int | None) -> float | None:
    """Upper-bound USD of one call for `maxCost` (512 output tokens when `max_output` is unset);
    None when nobody can price the model."""
    from .tiers import model_price

    if is_free(target):
        return 0.0
    completion = max_output if max_output else DEFAULT_OUTPUT_TOKEN_ESTIMATE
    cost = cost_from_tokens(target, prompt_tokens, completion)
    if cost == 0.0 and model_price(_model_of(target)) is None:
        return None
    return cost


@dataclass(frozen=True)
class Estimate:
    """What one model may cost: the prompt part, the price of one output token, the output bound."""

    prompt_usd: float
    per_output_token_usd: float
    max_output: int
    """The caller's `max_tokens`, else the model's maximum output."""
    priced: bool
    """False when nobody can price the model: it then reserves nothing."""

    def cost(self, output_tokens: int | None = None) -> float:
        tokens = self.max_output if output_tokens is None else min(output_tokens, self.max_output)
        return self.prompt_usd + tokens * self.per_output_token_usd


def estimate(target: Target | str, prompt_tokens: int, max_tokens: int | None) -> Estimate:
    """The worst case of one call, for budget reservations."""
    if is_free(target):
        return Estimate(0.0, 0.0, max_tokens or 0, True)
    per_prompt, per_output, priced, model_max = _unit_prices(_model_of(target))
    bound = max_tokens or model_max or _FALLBACK_MAX_OUTPUT
    return Estimate(prompt_tokens * per_prompt, per_output, int(bound), priced)


@functools.lru_cache(maxsize=1024)
def _unit_prices(model: str) -> tuple[float, float, bool, int | None]:
    """USD per prompt token, per output token, whether anyone prices the model, its max output.
    Cached: litellm's lookups cost tens of microseconds, and the answers never change."""
    from .tiers import model_price

    per_prompt = cost_from_tokens(model, 1_000_000, 0) / 1_000_000
    per_output = cost_from_tokens(model, 0, 1_000_000) / 1_000_000
    priced = per_prompt > 0 or per_output > 0 or model_price(model) is not None
    return per_prompt, per_output, priced, max_output_tokens(model)


def fit_budget(
    estimates: Sequence[Estimate], *, together: bool, remaining: float, capped: bool
) -> tuple[float, int | None] | None:
    """What to reserve out of `remaining`, and the `max_tokens` cap that makes it a true bound.

    `together`: the models may all be billed (race, consensus), so their worst cases add up;
    otherwise one answer is paid for (first, fallback) and the most expensive model counts.
    Returns `(amount, None)` when the worst case fits, `(amount, n)` when output must be capped
    at `n` tokens to fit (not when the caller set `max_tokens`: `capped`), None when nothing fits.
    """
    priced = [e for e in estimates if e.priced]

    def cost(tokens: int | None) -> float:
        values = [e.cost(tokens) for e in priced]
        return sum(values) if together else max(values, default=0.0)

    full = cost(None)
    if full <= remaining:
        return full, None
    if capped or cost(1) > remaining:
        return None
    low, high = 1, max(e.max_output for e in priced)
    while low < high:  # the largest output bound whose cost still fits
        middle = (low + high + 1) // 2
        if cost(middle) <= remaining:
            low = middle
        else:
            high = middle - 1
    return cost(low), low
