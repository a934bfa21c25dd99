"""The one seam where lucky_litellm errors become HTTP answers of the LiteLLM proxy.

Clients of the proxy are OpenAI SDKs: they decide whether to retry from the status code alone
(and from ``Retry-After`` / ``x-should-retry``), so each error gets the status that makes an SDK
do the right thing:

=================================  ======  ===========================================================
error                              status  why
=================================  ======  ===========================================================
ModelSpecError, UnknownTierError   400     the request names no valid model, as LiteLLM does
ValueError (e.g. consensus+stream) 400     the request asks for something the spec cannot do
AccessDeniedError                  403     another user's experiments
UnknownUserError, -ExperimentError 404     the named config does not exist
BudgetExceededError                429     ``x-should-retry: false``: spend does not reset by waiting
ConcurrencyLimitError              429     ``Retry-After: 1``: a slot frees up soon
AllModelsFailedError, Consensus-,  502     the upstreams answered, but not usefully
IncompleteStreamError
NoModelsAvailableError             503     every candidate is switched off or too dear
StrategyTimeoutError               504     the experiment deadline passed
ConfigError, other LuckyError      500     the operator's configuration is broken (message, no trace)
=================================  ======  ===========================================================

Messages are the errors' own texts, which never contain an API key (`errors.redact`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import (
    AllModelsFailedError,
    BudgetExceededError,
    ConcurrencyLimitError,
    ConsensusError,
    IncompleteStreamError,
    LuckyError,
    ModelSpecError,
    NoModelsAvailableError,
    StrategyTimeoutError,
    UnknownExperimentError,
    UnknownTierError,
    UnknownUserError,
    redact,
)

if TYPE_CHECKING:
    from fastapi import HTTPException

__all__ = ["AccessDeniedError", "HttpError", "http_error", "is_mapped"]

_MESSAGE_LIMIT = 2000


class AccessDeniedError(LuckyError, PermissionError):
    """The caller asked for another user's experiments without an admin key."""

    def __init__(self, caller: str | None, owner: str) -> None:
        self.caller = caller
        self.owner = owner
        who = f"user {caller!r}" if caller else "a caller without a user id"
        super().__init__(f"{who} may not use the experiments of user {owner!r}")


@dataclass(frozen=True)
class HttpError:
    """Status, message and headers of an error answer; `as_exception` builds FastAPI's type."""

    status: int
    message: str
    error_type: str
    headers: dict[str, str] = field(default_factory=dict)

    def as_exception(self) -> HTTPException:
        from fastapi import HTTPException

        detail = {"error": self.message, "lucky_error": self.error_type}
        return HTTPException(status_code=self.status, detail=detail, headers=self.headers or None)


# Most specific first: several errors share bases (UnknownTierError is a KeyError, ...).
_STATUSES: tuple[tuple[type[BaseException], int], ...] = (
    (ModelSpecError, 400),
    (UnknownTierError, 400),
    (AccessDeniedError, 403),
    (UnknownUserError, 404),
    (UnknownExperimentError, 404),
    (BudgetExceededError, 429),
    (ConcurrencyLimitError, 429),
    (AllModelsFailedError, 502),
    (ConsensusError, 502),
    (IncompleteStreamError, 502),
    (NoModelsAvailableError, 503),
    (StrategyTimeoutError, 504),
    (LuckyError, 500),
    (ValueError, 400),
)


def is_mapped(exc: BaseException) -> bool:
    """Whether `http_error` has a deliberate answer for `exc` (else LiteLLM's own mapping applies)."""
    return any(isinstance(exc, kind) for kind, _ in _STATUSES)


def http_error(exc: BaseException) -> HttpError:
    """The HTTP answer for `exc`; unknown exception types become a 500 without internals."""
    status = next((code for kind, code in _STATUSES if isinstance(exc, kind)), 500)
    headers: dict[str, str] = {}
    if isinstance(exc, BudgetExceededError):
        headers["x-should-retry"] = "false"
    elif isinstance(exc, ConcurrencyLimitError):
        headers["Retry-After"] = "1"
    if is_mapped(exc):
        message = redact(str(exc))[:_MESSAGE_LIMIT]
    else:
        message = f"internal error in lucky_litellm ({type(exc).__name__})"
    return HttpError(status=status, message=message, error_type=type(exc).__name__, headers=headers)
