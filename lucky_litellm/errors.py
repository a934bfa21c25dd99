"""Typed errors of lucky_litellm.

Every error the package raises on purpose derives from `LuckyError`, so callers can catch
the whole family or one leaf. Configuration problems ("you set me up wrong") are kept apart
from provider problems ("the models failed"), as pydantic-ai does with `UserError` and
`ModelAPIError`::

    LuckyError
    ├── ModelSpecError (also ValueError)      bad "tier:" / "user:" / "provider/model" spec
    ├── ConfigError (also ValueError)         invalid models or user config; lists every problem
    ├── UsageError (also ValueError)          a call asks for something the API cannot do
    │   ├── StreamingNotSupportedError        stream=True where whole answers are needed
    │   └── InvalidArgumentError (also TypeError)   an argument of the wrong type or shape
    │       └── InvalidMessagesError          `messages` is not a list of chat messages
    ├── UnknownTierError (also KeyError)
    ├── UnknownUserError (also KeyError)
    ├── UnknownExperimentError (also KeyError)
    ├── BudgetExceededError                   the user's costLimit would be exceeded
    ├── UnpricedModelError (also ValueError)  a costLimit user's call names a model nobody can price
    ├── StateUnavailableError                 the shared state store (Redis) cannot be reached
    │   └── BudgetUnavailableError            ... so a budgeted call is refused (onOutage policy)
    ├── ConcurrencyLimitError                 maxConcurrent slots stayed busy until the deadline
    ├── ProviderDisabledError                 a spec names a provider that is switched off
    ├── NoModelsAvailableError                every candidate was disabled or skipped
    │   └── CircuitOpenError                  ... because every model's circuit is open
    ├── AllModelsFailedError                  every attempt failed; carries each exception
    ├── ConsensusError                        answers came back but no group reached quorum
    ├── StrategyTimeoutError (also TimeoutError)   the experiment deadline expired
    ├── AttemptTimeoutError (also TimeoutError)    one call outlived its attemptTimeout (transient)
    ├── IncompleteStreamError                 the upstream cut a stream before it finished
    ├── EmptyAnswerError                      a 200 without choices: counts as a failed attempt
    └── MiddlewareError                       a middleware raised; names it, carries the cause

Messages never contain API keys: `redact` scrubs anything that looks like one before it is
stored in an error.
"""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .routing import Attempt

__all__ = [
    "AllModelsFailedError",
    "AttemptTimeoutError",
    "BudgetExceededError",
    "BudgetUnavailableError",
    "CircuitOpenError",
    "ConcurrencyLimitError",
    "ConfigError",
    "ConfigIssue",
    "ConsensusError",
    "EmptyAnswerError",
    "IncompleteStreamError",
    "InvalidArgumentError",
    "InvalidMessagesError",
    "LuckyError",
    "ModelSpecError",
    "NoModelsAvailableError",
    "ProviderDisabledError",
    "StateUnavailableError",
    "StrategyTimeoutError",
    "StreamingNotSupportedError",
    "UnknownExperimentError",
    "UnknownTierError",
    "UnknownUserError",
    "UnpricedModelError",
    "UsageError",
    "redact",
    "scrub_exception",
]

_SECRET_PATTERNS = [
    re.compile(r"\b(sk|pk|rk|gsk|xai|sk-ant|sk-or)-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9_\-\.=]{8,}"),
    re.compile(r"(?i)((?:api[_-]?key|authorization|x-api-key|token)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{6,}"),
]


def redact(text: str) -> str:
    """Replace anything shaped like a credential, so provider error texts can be shown safely."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.lastindex else "") + "***", text)
    return text


def scrub_exception(exc: BaseException, secrets: Sequence[str] = ()) -> BaseException:
    """Redact a third-party exception in place (its message and args), so neither `str(exc)` nor
    a logged traceback shows a key an upstream echoed back. Known secret values are removed
    verbatim; anything else shaped like a key is removed by pattern."""

    def clean(value: object) -> object:
        if isinstance(value, bytes):  # some provider errors carry the raw response body
            for secret in secrets:
                if secret:
                    value = value.replace(secret.encode(), b"***")
            return redact(value.decode("latin-1")).encode("latin-1")
        if not isinstance(value, str):
            return value
        for secret in secrets:
            if secret:
                value = value.replace(secret, "***")
        return redact(value)

    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:  # the exception and everything chained to it (litellm wraps the openai error)
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        message = getattr(current, "message", None)
        if isinstance(message, str):
            with contextlib.suppress(AttributeError):  # read-only on some exception types
                current.message = clean(message)  # type: ignore[attr-defined]
        current.args = tuple(clean(arg) for arg in current.args)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        # litellm's exceptions render more than their args: MidStreamFallbackError appends its
        # `original_exception`, others keep the upstream text in attributes of their own
        for name, value in list(getattr(current, "__dict__", {}).items()):
            if isinstance(value, BaseException):
                pending.append(value)
            elif isinstance(value, str | bytes):
                with contextlib.suppress(AttributeError, TypeError):
                    setattr(current, name, clean(value))
    return exc


class LuckyError(Exception):
    """Base class of every error lucky_litellm raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ModelSpecError(LuckyError, ValueError):
    """A model spec is malformed or names a provider nobody knows."""

    def __init__(self, spec: object, reason: str) -> None:
        self.spec = spec
        self.reason = reason
        super().__init__(f"invalid model spec {spec!r}: {reason}")


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration: where it is and what is wrong."""

    path: str
    message: str
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        elif self.line:
            where = f"line {self.line}: "
        location = self.path or "(document)"
        return f"{where}{location}: {self.message}"


class ConfigError(LuckyError, ValueError):
    """A configuration is invalid. `issues` lists every problem, each with its path and line."""

    def __init__(self, issues: Sequence[ConfigIssue], title: str = "invalid configuration") -> None:
        self.issues = list(issues)
        self.title = title
        count = len(self.issues)
        header = f"{title} ({count} problem{'s' if count != 1 else ''})"
        super().__init__("\n".join([header, *(f"  - {issue}" for issue in self.issues)]))


class UsageError(LuckyError, ValueError):
    """The caller asked for something the API cannot do (a caller's mistake, not the models'):
    raised before anything is sent. Also a `ValueError`, as the plain errors it replaces were."""


class StreamingNotSupportedError(UsageError):
    """`stream=True` where whole answers are needed: a consensus compares complete answers, and
    `complete_sync` cannot hand back an async stream."""


class InvalidArgumentError(UsageError, TypeError):
    """An argument has the wrong type or shape; also a `TypeError`, so both usual catches work."""


class InvalidMessagesError(InvalidArgumentError):
    """`messages` is not a non-empty list of OpenAI chat messages. `field` names the offending
    place (``messages``, ``messages[2].content``), `index` the message (None for the list
    itself). Nothing was sent and no circuit or budget was touched."""

    def __init__(self, field: str, reason: str, index: int | None = None) -> None:
        self.field = field
        self.reason = reason
        self.index = index
        super().__init__(f"invalid messages: {field} {reason} (nothing was sent)")


class UnknownTierError(LuckyError, KeyError):
    """The spec names a tier that is not configured."""

    def __init__(self, tier: str, known: Sequence[str]) -> None:
        self.tier = tier
        self.known = list(known)
        close = difflib.get_close_matches(tier, self.known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        super().__init__(f"unknown tier {tier!r}{hint}; known tiers: {', '.join(sorted(known)) or '(none)'}")

    def __str__(self) -> str:  # KeyError would otherwise wrap the message in quotes
        return self.message


class UnknownUserError(LuckyError, KeyError):
    """No experiment config was loaded for this user."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        super().__init__(f"no user config loaded for user {user_id!r} (use Models.load_user_config)")

    def __str__(self) -> str:
        return self.message


class UnknownExperimentError(LuckyError, KeyError):
    """The user's config has no experiment of that name."""

    def __init__(self, user_id: str, experiment: str, known: Sequence[str]) -> None:
        self.user_id = user_id
        self.experiment = experiment
        self.known = list(known)
        close = difflib.get_close_matches(experiment, self.known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        super().__init__(
            f"user {user_id!r} has no experiment {experiment!r}{hint}; known: {', '.join(known) or '(none)'}"
        )

    def __str__(self) -> str:
        return self.message


class BudgetExceededError(LuckyError):
    """The request could push the user's spend past `costLimit`; nothing was sent."""

    def __init__(self, user_id: str | None, spent_usd: float, limit_usd: float, needed_usd: float = 0.0):
        self.user_id = user_id
        self.spent_usd = spent_usd
        self.limit_usd = limit_usd
        self.needed_usd = needed_usd
        super().__init__(
            f"budget exceeded for user {user_id!r}: spent ${spent_usd:.6f} (+${needed_usd:.6f} reserved "
            f"for this request) of limit ${limit_usd:.6f}"
        )


PRICING_HINT = (
    "price it with litellm.register_model({{{model!r}: {{'input_cost_per_token': ..., "
    "'output_cost_per_token': ..., 'litellm_provider': {provider!r}, 'mode': 'chat'}}}}) "
    "before the config is loaded, serve it from a local/ provider if it is self-hosted (free), "
    "or drop costLimit"
)
"""How to make a model priceable, formatted with the litellm model and its provider."""


def pricing_hint(litellm_model: str) -> str:
    """`PRICING_HINT` for one litellm model (``openai/gpt-9-ultra``)."""
    provider = litellm_model.partition("/")[0] if "/" in litellm_model else "openai"
    return PRICING_HINT.format(model=litellm_model, provider=provider)


class UnpricedModelError(LuckyError, ValueError):
    """A user with a `costLimit` called a cloud model that litellm's cost map cannot price: its
    spend could not be reserved, so the budget would not bound it. Nothing was sent."""

    def __init__(self, user_id: str | None, models: Sequence[str], limit_usd: float) -> None:
        self.user_id = user_id
        self.models = list(models)
        self.limit_usd = limit_usd
        names = ", ".join(repr(m) for m in self.models)
        super().__init__(
            f"user {user_id!r} has costLimit ${limit_usd:.6f}, but nobody can price {names}: "
            f"its spend could not be bounded, so nothing was sent; {pricing_hint(self.models[0])}"
        )


class StateUnavailableError(LuckyError):
    """The shared state store cannot be reached (or holds unreadable data), so a change did not
    land or a value could not be read."""


class BudgetUnavailableError(StateUnavailableError):
    """A budgeted call was refused because the shared spend ledger is unreachable and the outage
    policy (`state.onOutage`) does not allow this process to spend for the user meanwhile."""

    def __init__(self, user_id: str | None, reason: str) -> None:
        self.user_id = user_id
        super().__init__(f"budget of user {user_id!r} cannot be checked: {reason}")


class ProviderDisabledError(LuckyError):
    """A spec names a provider that is switched off; `hint` says what would switch it on."""

    def __init__(self, provider: str, hint: str) -> None:
        self.provider = provider
        self.hint = hint
        super().__init__(f"provider {provider!r} is disabled: {hint}")


class ConcurrencyLimitError(LuckyError):
    """The user's `maxConcurrent` slots stayed busy until the request's deadline."""

    def __init__(self, user_id: str | None, limit: int, waited_s: float) -> None:
        self.user_id = user_id
        self.limit = limit
        self.waited_s = waited_s
        super().__init__(
            f"user {user_id!r} already has {limit} requests in flight (maxConcurrent); "
            f"waited {waited_s:.3f}s for a slot"
        )


class NoModelsAvailableError(LuckyError):
    """Every candidate model was disabled or skipped (e.g. by maxCost) before any call."""

    def __init__(self, spec: str, reasons: Sequence[str]) -> None:
        self.spec = spec
        self.reasons = list(reasons)
        super().__init__(f"no model available for {spec!r}: " + "; ".join(reasons))


class CircuitOpenError(NoModelsAvailableError):
    """Every model of the plan has an open circuit (`health.circuit.whenAllOpen: fail`): the call
    fails at once instead of waiting on models known to be down. `retry_in_s` maps each model to
    the seconds until its circuit lets a probe through (0: a probe is in flight elsewhere)."""

    def __init__(self, spec: str, retry_in_s: dict[str, float], reasons: dict[str, str]) -> None:
        self.retry_in_s = dict(retry_in_s)
        self.circuit_reasons = dict(reasons)
        parts = [
            f"{model}: circuit open ({reasons.get(model, 'failing')}), retried in {seconds:.1f} s"
            for model, seconds in retry_in_s.items()
        ]
        super().__init__(spec, parts)


def _describe_attempts(attempts: Sequence[Attempt]) -> str:
    parts = []
    for attempt in attempts:
        detail = f" ({attempt.error})" if attempt.error else ""
        parts.append(f"{attempt.model}: {attempt.outcome}{detail}")
    return "; ".join(parts) or "no attempt started"


class AllModelsFailedError(LuckyError):
    """Every model of the strategy failed. `exceptions` holds each attempt's exception in order."""

    def __init__(self, spec: str, attempts: Sequence[Attempt], exceptions: Sequence[BaseException]):
        self.spec = spec
        self.attempts = list(attempts)
        self.exceptions = list(exceptions)
        super().__init__(f"all models failed for {spec!r}: {_describe_attempts(self.attempts)}")


class ConsensusError(LuckyError):
    """The answers did not agree enough: no group of equal answers reached the quorum.

    `votes` maps each answer to its count (abstentions, i.e. empty answers and failures, are in
    no group); `needed` is the number of votes the quorum takes out of `asked` models."""

    def __init__(
        self,
        spec: str,
        votes: dict[str, int],
        agreement: float,
        required: float | None,
        attempts: Any,
        *,
        asked: int | None = None,
        needed: int | None = None,
    ):
        self.spec = spec
        self.votes = votes
        self.agreement = agreement
        self.required = required
        self.attempts = list(attempts)
        self.asked = asked
        self.needed = needed
        best = max(votes.values(), default=0)
        rule = "a strict majority" if required is None else f"minAgreement {required:.2f}"
        if asked is not None and needed is not None:
            shortfall = (
                f"the best answer had {best} of {asked} votes ({agreement:.2f}); {rule} needs {needed}"
            )
        else:
            shortfall = f"best agreement {agreement:.2f} is short of {rule}"
        super().__init__(
            f"no consensus for {spec!r}: {shortfall} (groups: {sorted(votes.values(), reverse=True)})"
        )


class StrategyTimeoutError(LuckyError, TimeoutError):
    """The experiment's overall deadline expired; in-flight calls were cancelled."""

    def __init__(self, spec: str, timeout_s: float, attempts: Sequence[Attempt]) -> None:
        self.spec = spec
        self.timeout_s = timeout_s
        self.attempts = list(attempts)
        super().__init__(
            f"{spec!r} timed out after {timeout_s:.3f}s; tried: {_describe_attempts(self.attempts)}"
        )


class AttemptTimeoutError(LuckyError, TimeoutError):
    """One call to one model outlived its budget (`attemptTimeout`, or the share of the deadline
    its strategy gives it) and was cancelled. Transient: the model is retried if its retries and
    budget allow, else the strategy moves on, so a hung model cannot starve the next one."""

    def __init__(self, model: str, budget_s: float) -> None:
        self.model = model
        self.budget_s = budget_s
        super().__init__(f"{model!r} did not answer within its attempt budget of {budget_s * 1000:.0f} ms")


class IncompleteStreamError(LuckyError):
    """The upstream ended a stream without a finish_reason or `[DONE]`: the answer is truncated."""

    def __init__(self, model: str, chunks: int) -> None:
        self.model = model
        self.chunks = chunks
        super().__init__(f"stream from {model!r} ended after {chunks} chunks without finishing")


class EmptyAnswerError(LuckyError):
    """The upstream answered 200 without a choice or a message: a failed attempt, not an answer
    (a fallback moves on, a race keeps waiting)."""

    def __init__(self, model: str) -> None:
        self.model = model
        super().__init__(f"{model!r} answered without any choice (empty `choices`)")


class MiddlewareError(LuckyError):
    """A middleware (`Models.use`, ``middleware:``) raised instead of answering; `name` says which.

    Errors of the request itself (a budget, every model failing) pass through middleware unchanged:
    only what a middleware raises on its own account is wrapped, with the original as `__cause__`."""

    def __init__(self, name: str, error: BaseException) -> None:
        self.name = name
        super().__init__(f"middleware {name!r} failed: {type(error).__name__}: {error}")
