"""The one seam where lucky_litellm errors become HTTP answers of the LiteLLM proxy.

Clients of the proxy are OpenAI SDKs: they decide whether to retry from the status code alone
(and from ``Retry-After`` / ``x-should-retry``), so each error gets the status that makes an SDK
do the right thing, and an OpenAI-shaped body (``{"error": {"message", "type", "param", "code"}}``)
on every endpoint:

=================================  ======  ===========================================================
error                              status  why
=================================  ======  ===========================================================
ModelSpecError, UnknownTierError   400     the request names no valid model, as LiteLLM does
UsageError, ValueError             400     the request asks for what the spec cannot do (consensus+stream)
AccessDeniedError                  403     another user's experiments
UnknownUserError, -ExperimentError 404     the named config does not exist
BudgetExceededError                429     ``x-should-retry: false``: spend does not reset by waiting
ConcurrencyLimitError              429     ``Retry-After: 1``: a slot frees up soon
AllModelsFailedError, Consensus-,  502     the upstreams answered, but not usefully
IncompleteStreamError, resets              (``x-should-retry: false``: lucky already retried per model)
  ... every model rate-limited     429     with the upstreams' shortest ``Retry-After``
NoModelsAvailableError             503     every candidate is switched off or too dear
StrategyTimeoutError               504     the experiment deadline passed (``x-should-retry: false``:
                                           a retry would get the same deadline again)
ConfigError, other LuckyError      500     the operator's configuration is broken (message, no trace)
=================================  ======  ===========================================================

Messages are the errors' own texts, which never contain an API key (`errors.redact`); where the
library's text names a library call, the proxy's answer names the proxy's configuration instead.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import (
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
    UsageError,
    redact,
)
from ..retry import retry_after_seconds, status_of

if TYPE_CHECKING:
    from fastapi import HTTPException
    from litellm.proxy._types import ProxyException

__all__ = [
    "AccessDeniedError",
    "HttpError",
    "MidStreamError",
    "http_error",
    "is_mapped",
]

_MESSAGE_LIMIT = 2000
NO_RETRY = {"x-should-retry": "false"}


class AccessDeniedError(LuckyError, PermissionError):
    """The caller asked for another user's experiments without an admin key."""

    def __init__(self, caller: str | None, owner: str) -> None:
        self.caller = caller
        self.owner = owner
        who = f"user {caller!r}" if caller else "a caller without a user id"
        super().__init__(f"{who} may not use the experiments of user {owner!r}")


class MidStreamError(LuckyError):
    """The upstream failed after the stream had started (reset, protocol error): a truncated answer."""

    def __init__(self, model: str | None, cause: BaseException) -> None:
        self.model = model
        super().__init__(
            f"stream from {model or 'the upstream'!r} broke off mid-answer ({type(cause).__name__}); "
            "the answer is incomplete"
        )


_OPENAI_TYPES = {
    400: "invalid_request_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "internal_server_error",
    502: "api_error",
    503: "service_unavailable_error",
    504: "timeout_error",
}


@dataclass(frozen=True)
class HttpError:
    """Status, message and headers of an error answer, as LiteLLM's two exception types."""

    status: int
    message: str
    error_type: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def openai_type(self) -> str:
        return _OPENAI_TYPES.get(self.status, "api_error")

    def as_proxy_exception(self) -> ProxyException:
        """What the hook raises: LiteLLM renders it as an OpenAI error body on every endpoint."""
        from litellm.proxy._types import ProxyException

        return ProxyException(
            message=self.message,
            type=self.openai_type,
            param=None,
            code=self.status,
            headers=dict(self.headers),
            provider_specific_fields={"lucky_error": self.error_type},
        )

    def as_exception(self) -> HTTPException:
        """What the failure hook returns (LiteLLM only takes an HTTPException from there)."""
        from fastapi import HTTPException

        detail = {"error": self.message, "lucky_error": self.error_type}
        return HTTPException(status_code=self.status, detail=detail, headers=dict(self.headers) or None)


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
    (MidStreamError, 502),
    (NoModelsAvailableError, 503),
    (StrategyTimeoutError, 504),
    (UsageError, 400),
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
    if isinstance(exc, ConcurrencyLimitError):
        headers["Retry-After"] = "1"
    elif status in (429, 502, 504):
        headers.update(NO_RETRY)
    if isinstance(exc, AllModelsFailedError):
        wait = _rate_limited_for(exc.exceptions)
        if wait is not None:  # every model said "slow down": pass that on, as the upstream would
            status = 429
            headers = {"Retry-After": str(max(1, math.ceil(wait)))}
        else:
            statuses = {status_of(e) for e in exc.exceptions}
            only = statuses.pop() if len(statuses) == 1 else None
            if isinstance(only, int) and 400 <= only < 500 and only != 429:
                status, headers = only, {}  # every model refused the request itself: the client's to fix
    if not is_mapped(exc):
        message = f"internal error in lucky_litellm ({type(exc).__name__})"
    elif isinstance(exc, UnknownUserError):
        message = unknown_user_hint(exc.user_id)
    else:
        message = redact(str(exc))[:_MESSAGE_LIMIT]
    return HttpError(status=status, message=message, error_type=type(exc).__name__, headers=headers)


def upstream_error(exc: BaseException) -> HttpError | None:
    """The answer for an upstream error on a one-model route, keeping its status and Retry-After;
    None when LiteLLM's own mapping already says everything."""
    status = status_of(exc)
    wait = retry_after_seconds(exc)
    if status == 429 and wait is not None:
        message = redact(str(getattr(exc, "message", exc)))[:_MESSAGE_LIMIT]
        return HttpError(429, message, type(exc).__name__, {"Retry-After": str(max(1, math.ceil(wait)))})
    return None


def _rate_limited_for(exceptions: list[BaseException]) -> float | None:
    """The shortest Retry-After when every failure was a 429 that carried one."""
    waits: list[float] = []
    for exc in exceptions:
        wait = retry_after_seconds(exc)
        if status_of(exc) != 429 or wait is None:
            return None
        waits.append(wait)
    return min(waits) if waits else None


def unknown_user_hint(user_id: str) -> str:
    where = os.environ.get("LUCKY_MODELS_CONFIG")
    source = f"the models file {where}" if where else "a models file named by LUCKY_MODELS_CONFIG"
    return (
        f"no experiments configured for user {user_id!r}: add them under `users:` in {source} "
        "(the proxy's lucky_litellm settings) and restart the proxy"
    )


def error_attributes(exc: BaseException) -> dict[str, Any]:
    """``message``/``type``/``status_code`` for an exception raised mid-stream, which LiteLLM turns
    into the SSE error event's body."""
    error = http_error(exc)
    return {"message": error.message, "type": error.openai_type, "status_code": error.status}
