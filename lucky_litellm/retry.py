"""Which provider errors are worth retrying, and how long to wait before the next try.

Built on tenacity: transient errors only (429, 408, 409, 5xx, timeouts, connection errors),
exponential backoff with jitter, a server's `Retry-After` honoured, and never past the
request's deadline: a wait that would end after the deadline is not taken at all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_exponential_jitter

from .errors import AttemptTimeoutError, IncompleteStreamError

__all__ = ["TRANSIENT_STATUS", "RetryPolicy", "is_transient", "retry_after_seconds", "status_of"]

T = TypeVar("T")

TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})
_TRANSIENT_NAMES = frozenset(
    {
        "Timeout",
        "APITimeoutError",
        "APIConnectionError",
        "InternalServerError",
        "ServiceUnavailableError",
        "RateLimitError",
        "ConnectError",
        "ReadError",
        "RemoteProtocolError",
        "ServerDisconnectedError",
        "ClientConnectionError",
        "ClientPayloadError",
        "ReadTimeout",
        "ConnectTimeout",
        "TimeoutException",
    }
)


def status_of(exc: BaseException) -> int | None:
    """HTTP status carried by a litellm/openai/httpx exception, if any."""
    for attr in ("status_code", "status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    response = getattr(exc, "response", None)
    value = getattr(response, "status_code", None)
    return value if isinstance(value, int) else None


def is_transient(exc: BaseException) -> bool:
    """True for failures a retry may cure; other 4xx (bad request, auth, not found) never are."""
    if isinstance(exc, IncompleteStreamError | AttemptTimeoutError | asyncio.TimeoutError | ConnectionError):
        return True
    status = status_of(exc)
    if status is not None:
        return status in TRANSIENT_STATUS or status >= 500
    return any(cls.__name__ in _TRANSIENT_NAMES for cls in type(exc).__mro__)


def retry_after_seconds(exc: BaseException) -> float | None:
    """The server's Retry-After (seconds form) from the exception's response headers."""
    candidates: list[Any] = [
        getattr(exc, "litellm_response_headers", None),
        getattr(getattr(exc, "response", None), "headers", None),
        getattr(exc, "headers", None),
    ]
    for headers in candidates:
        if not headers:
            continue
        try:
            value = headers.get("retry-after") or headers.get("Retry-After")
            if value is None:
                value = headers.get("retry-after-ms") and float(headers.get("retry-after-ms")) / 1000
        except (AttributeError, TypeError, ValueError):
            continue
        if value is None or value == "":
            continue
        try:
            return max(float(value), 0.0)
        except (TypeError, ValueError):
            continue
    return None


class _StopBeforeDeadline(stop_base):
    """Stop when the coming wait would end past the deadline: a retry that cannot finish in time
    only delays the failure (and keeps a fallback from trying its next model)."""

    def __init__(self, deadline: float, wait: Callable[[RetryCallState], float]) -> None:
        self.deadline = deadline
        self.wait = wait

    def __call__(self, retry_state: RetryCallState) -> bool:
        return time.monotonic() + self.wait(retry_state) >= self.deadline


class RetryPolicy:
    """Retries one model's call within a deadline.

    `sleep` is injectable (as in tenacity) so tests can observe waits without real time.
    """

    def __init__(
        self,
        retries: int,
        *,
        initial_backoff_s: float = 0.2,
        max_backoff_s: float = 4.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.retries = max(int(retries), 0)
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.sleep = sleep
        self._backoff: wait_exponential_jitter | None = None
        """Made on the first retry (most requests never retry); stateless, so a policy can be shared."""

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(retries={self.retries}, backoff={self.initial_backoff_s}..{self.max_backoff_s}s, "
            "retry_after=honoured)"
        )

    def wait_for(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        after = retry_after_seconds(exc) if exc is not None else None
        if after is not None:
            return after
        if self._backoff is None:
            self._backoff = wait_exponential_jitter(
                multiplier=self.initial_backoff_s, max=self.max_backoff_s, jitter=self.initial_backoff_s
            )
        return float(self._backoff(state))

    async def run(self, fn: Callable[[], Awaitable[T]], deadline: float) -> T:
        """Call `fn` until it succeeds, fails for good, runs out of tries, or the next wait
        would cross `deadline` (a `time.monotonic()` value).

        The first try is a plain await: tenacity's bookkeeping costs tens of microseconds per
        call, and is only worth paying once a transient failure has actually happened.
        """
        try:
            return await fn()
        except Exception as exc:
            if self.retries == 0 or not is_transient(exc):
                raise
            first_failure = exc

        tries = 0

        async def call() -> T:  # a real coroutine function, whatever callable `fn` is
            nonlocal tries
            tries += 1
            if tries == 1:  # replays the failure already seen, so backoff and Retry-After apply to it
                raise first_failure
            return await fn()

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retries + 1) | _StopBeforeDeadline(deadline, self.wait_for),
            wait=self.wait_for,
            retry=retry_if_exception(is_transient),
            sleep=self.sleep,
            reraise=True,
        )
        return await retrying(call)
