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
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .providers import Target

__all__ = [
    "DEFAULT_OUTPUT_TOKEN_ESTIMATE",
    "PROMPT_TOKEN_MARGIN",
    "Estimate",
    "clear_price_cache",
    "completion_tokens_of_text",
    "cost_from_tokens",
    "cost_of_usage",
    "count_prompt_tokens",
    "estimate",
    "estimate_cost",
    "estimate_prompt_tokens",
    "fit_budget",
    "is_free",
    "is_priced",
    "max_output_tokens",
    "per_output_token_usd",
    "response_cost",
    "warn_unpriced",
]

DEFAULT_OUTPUT_TOKEN_ESTIMATE = 512
"""Output tokens assumed for `maxCost` when the caller sets no `max_tokens`: a typical chat answer.
Budgets never use it: a reservation covers the most the call can really produce."""

PROMPT_TOKEN_MARGIN = 1.15

_OFFLINE_TOKENIZER_MODEL = "gpt-4o"
_FALLBACK_MAX_OUTPUT = 4096
"""Output bound assumed for a priced model whose cost map entry gives no maximum."""


_FREE: frozenset[str] | None = None


def _free_providers() -> frozenset[str]:
    global _FREE
    if _FREE is None:  # imported on first use: tiers imports this module
        from .tiers import FREE_PROVIDERS

        _FREE = FREE_PROVIDERS
    return _FREE


def is_free(target: Target | str) -> bool:
    """Whether calls to `target` cost nothing (a local runtime)."""
    if isinstance(target, str):
        provider = target.partition("/")[0]
        return provider in _free_providers()
    free = _free_providers()
    return target.provider in free or target.litellm_model.partition("/")[0] in free


def is_priced(target: Target | str) -> bool:
    """Whether a call to `target` has a known price: a free provider, a model litellm's cost map
    prices (including ones added with `litellm.register_model`), or a reseller's upstream model.
    litellm prices a model it does not know at $0 without complaint, which a budget cannot bound."""
    if is_free(target):
        return True
    from .tiers import model_price

    model = _model_of(target)
    if model_price(model) is not None:
        return True
    return per_output_token_usd(target) > 0 or cost_from_tokens(target, 1, 0) > 0


logger = logging.getLogger("lucky_litellm.pricing")

_warned_unpriced: set[str] = set()


def warn_unpriced(models: Sequence[str]) -> None:
    """Log once per model (per process) that calls to it are recorded at $0: litellm has no
    price for it. Only plans that contain such a model call this."""
    for model in models:
        if model in _warned_unpriced:
            continue
        _warned_unpriced.add(model)
        from .errors import pricing_hint

        logger.warning(
            "litellm has no price for %r: its calls are recorded at $0 and a costLimit refuses it; %s",
            model,
            pricing_hint(model).replace(", or drop costLimit", ""),
        )


def _model_of(target: Target | str) -> str:
    return target if isinstance(target, str) else target.litellm_model


# -- counting ---------------------------------------------------------------------------------


def count_prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """Prompt tokens as the tokenizer counts them, chars/4 for content it cannot count."""
    counted = _count_plain_messages(messages)
    if counted is not None:
        return counted
    import litellm

    try:
        return int(litellm.token_counter(model=_OFFLINE_TOKENIZER_MODEL, messages=list(messages)))
    except Exception:
        text = sum(len(str(m.get("content") or "")) for m in messages)
        return text // 4 + 4 * len(messages)


_REPLY_PRIMING_TOKENS = 3
"""What `litellm.token_counter` adds to a message list without tools: the reply's opening."""


@functools.cache
def _tokenizer() -> tuple[int, int, Callable[[str], int]] | None:
    """(tokens per message, tokens per name, count function) `litellm.token_counter` uses for the
    offline model: found once, where litellm looks them up on every call (most of its cost: the
    tokenizer choice, not the counting). None when this litellm does not expose them."""
    try:
        from litellm.litellm_core_utils.token_counter import _MessageCountParams

        params = _MessageCountParams(_OFFLINE_TOKENIZER_MODEL, None)
        per_message, per_name, count = (
            params.tokens_per_message,
            params.tokens_per_name,
            params.count_function,
        )
    except Exception:
        return None
    if not (isinstance(per_message, int) and isinstance(per_name, int) and callable(count)):
        return None
    return per_message, per_name, count


def _count_plain_messages(messages: Sequence[Mapping[str, Any]]) -> int | None:
    """`litellm.token_counter`'s count for messages whose fields are all text (the usual chat
    message), with the tokenizer found once; None for anything else (parts, images, tool calls),
    which litellm then counts itself. The same arithmetic as litellm's, so the same number."""
    import litellm

    tokenizer = _tokenizer()
    if tokenizer is None or litellm.disable_token_counter:
        return None
    per_message, per_name, count = tokenizer
    total = _REPLY_PRIMING_TOKENS
    for message in messages:
        if not isinstance(message, Mapping):
            return None
        total += per_message
        for key, value in message.items():
            if value is None:
                continue
            if not isinstance(value, str) or key in ("tool_calls", "function_call"):
                return None
            total += count(value)
            if key == "name":
                total += per_name
    return total


def estimate_prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """Prompt tokens padded by `PROMPT_TOKEN_MARGIN`: an upper bound for reservations."""
    return math.ceil(count_prompt_tokens(messages) * PROMPT_TOKEN_MARGIN)


def completion_tokens_of_text(text: str) -> int:
    """Output tokens of a partial answer, counted as `litellm.stream_chunk_builder` does when the
    stream carried no usage (its `count_response_tokens` mode), with the offline tokenizer."""
    if not text:
        return 0
    import litellm

    tokenizer = _tokenizer()
    if tokenizer is not None and not litellm.disable_token_counter:
        return tokenizer[2](text)
    try:
        return int(
            litellm.token_counter(model=_OFFLINE_TOKENIZER_MODEL, text=text, count_response_tokens=True)
        )
    except Exception:
        return max(1, len(text) // 4)


# -- prices -----------------------------------------------------------------------------------


def cost_from_tokens(target: Target | str, prompt_tokens: int, completion_tokens: int) -> float:
    """USD for a token count: $0 for free providers, litellm's cost map, else the upstream
    vendor's price for resellers (litellm's offline map has no OpenRouter entries), else 0.

    Priced from the model's `_PriceCard` (looked up once) when the counts are within the range
    its linearity was checked on, else by litellm itself: the same figure either way."""
    if is_free(target):
        return 0.0
    model = _model_of(target)
    card = _card(model)
    if card is not None:
        if card.per_million is not None:
            return (prompt_tokens * card.per_million[0] + completion_tokens * card.per_million[1]) / 1_000_000
        if 0 <= prompt_tokens <= _LINEAR_UP_TO and 0 <= completion_tokens <= _LINEAR_UP_TO:
            return prompt_tokens * card.input_usd + completion_tokens * card.output_usd
    return _cost_from_tokens_uncached(model, prompt_tokens, completion_tokens)


def _cost_from_tokens_uncached(model: str, prompt_tokens: int, completion_tokens: int) -> float:
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


_LINEAR_UP_TO = 65_536
"""Token counts (prompt, completion) up to which a model's price card is used. Its linearity is
checked up to here when the card is made; litellm's tiered prices start above 100k tokens."""

_MAX_CARDS = 4096


@dataclass(frozen=True)
class _PriceCard:
    """A model's prices, read from litellm once: a `litellm.cost_per_token` call costs ~0.2 ms of
    CPU (provider resolution, cost-map lookups, a pydantic `Usage`), and they never change."""

    input_usd: float
    """USD per prompt token, as litellm prices one."""
    output_usd: float
    """USD per completion token, as litellm prices one."""
    per_output_token_usd: float
    """USD per output token at the scale of a budget's bound (1M tokens): `estimate` uses it."""
    per_million: tuple[float, float] | None = None
    """Set when litellm cannot price the model: the reseller fallback (`model_price`), USD per
    1M tokens, used for any count; (0, 0) when nobody can price it."""


_cards: dict[str, _PriceCard | None] = {}
_cards_source: tuple[int, int] = (0, 0)


def clear_price_cache() -> None:
    """Forget every price card. Needed only after changing an existing entry of
    `litellm.model_cost` in place; a replaced cost map or a newly registered model (a different
    size) is noticed by itself."""
    _cards.clear()


def _card(model: str) -> _PriceCard | None:
    """The model's price card, made on first use; None when litellm's prices are not linear in
    the token counts (then every count is priced by litellm)."""
    global _cards_source
    import litellm

    source = (id(litellm.model_cost), len(litellm.model_cost))
    if source != _cards_source:
        _cards.clear()
        _cards_source = source
    try:
        return _cards[model]
    except KeyError:
        pass
    card = _make_card(model)
    if len(_cards) >= _MAX_CARDS:
        _cards.clear()
    _cards[model] = card
    return card


def _make_card(model: str) -> _PriceCard | None:
    import litellm

    def litellm_cost(prompt: int, completion: int) -> float:
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=model, prompt_tokens=prompt, completion_tokens=completion
        )
        return float(prompt_cost) + float(completion_cost)

    try:
        input_usd, output_usd = litellm_cost(1, 0), litellm_cost(0, 1)
    except Exception:
        from .tiers import model_price

        price = model_price(model) or (0.0, 0.0)
        # the same arithmetic as `cost_from_tokens(model, 0, 1_000_000) / 1_000_000`
        per_output = (0 * price[0] + 1_000_000 * price[1]) / 1_000_000 / 1_000_000
        return _PriceCard(0.0, 0.0, per_output, per_million=price)
    try:
        # the card stands for litellm only where it gives the very same figures
        for prompt, completion in (
            (_LINEAR_UP_TO, 0),
            (0, _LINEAR_UP_TO),
            (_LINEAR_UP_TO, _LINEAR_UP_TO),
            (977, 31),
        ):
            if litellm_cost(prompt, completion) != prompt * input_usd + completion * output_usd:
                return None
        per_output = litellm_cost(0, 1_000_000) / 1_000_000
    except Exception:
        return None
    return _PriceCard(input_usd, output_usd, per_output)


def per_output_token_usd(target: Target | str) -> float:
    """USD per output token for a budget's bound (priced at 1M tokens, tiers included)."""
    if is_free(target):
        return 0.0
    model = _model_of(target)
    card = _card(model)
    if card is not None:
        return card.per_output_token_usd
    return _cost_from_tokens_uncached(model, 0, 1_000_000) / 1_000_000


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


def plain_usage_cost(model: str, usage: Any) -> float | None:
    """litellm's price for a `Usage` of prompt and completion tokens only, from the model's price
    card (no litellm call); None when litellm must price it itself (cached, reasoning or audio
    tokens, prices not linear in the counts). A model litellm cannot price costs it $0.

    For the proxy's nested engine calls: litellm prices every response it returns (~0.7 ms of
    CPU, most of it model-info lookups), and a response that already carries its cost is not
    priced again."""
    if usage is None or _has_token_details(usage):
        return None
    prompt = getattr(usage, "prompt_tokens", None)
    completion = getattr(usage, "completion_tokens", None)
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    card = _card(model)
    if card is None:
        return None
    if card.per_million is not None:
        return 0.0  # litellm has no price for it (the reseller fallback is lucky's own figure)
    if not (0 <= prompt <= _LINEAR_UP_TO and 0 <= completion <= _LINEAR_UP_TO):
        return None
    return prompt * card.input_usd + completion * card.output_usd


def _has_token_details(usage: Any) -> bool:
    """Whether a `Usage` counts tokens litellm prices apart (cache reads and writes, reasoning,
    audio, images, ...): any non-zero detail except the plain text tokens."""
    if getattr(usage, "cache_creation_input_tokens", None) or getattr(usage, "cache_read_input_tokens", None):
        return True
    for name in ("prompt_tokens_details", "completion_tokens_details", "server_tool_use"):
        details = getattr(usage, name, None)
        if details is None:
            continue
        values = details.items() if isinstance(details, dict) else vars(details).items()
        if any(value for key, value in values if key != "text_tokens"):
            return True
    return False


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
    from .tiers import model_price

    prompt_usd = cost_from_tokens(target, prompt_tokens, 0)
    per_token = per_output_token_usd(target)
    priced = prompt_usd > 0 or per_token > 0 or model_price(_model_of(target)) is not None
    bound = max_tokens or max_output_tokens(target) or _FALLBACK_MAX_OUTPUT
    return Estimate(prompt_usd, per_token, int(bound), priced)


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
