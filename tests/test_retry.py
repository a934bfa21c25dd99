"""Retry policy on its own: what is transient, Retry-After, bounds and the deadline.

End-to-end retries against the fake upstream are in test_strategies."""

import time

import httpx
import litellm
import pytest

from lucky_litellm.retry import RetryPolicy, is_transient, retry_after_seconds

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _litellm_error(cls, status: int, headers: dict[str, str] | None = None):
    response = httpx.Response(status, headers=headers or {}, request=httpx.Request("POST", "http://x"))
    return cls(message="boom", llm_provider="openai", model="gpt-4.1-mini", response=response)


@pytest.mark.parametrize(
    ("cls", "status", "expected"),
    [
        (litellm.RateLimitError, 429, True),
        (litellm.InternalServerError, 500, True),
        (litellm.ServiceUnavailableError, 503, True),
        (litellm.BadRequestError, 400, False),
        (litellm.AuthenticationError, 401, False),
        (litellm.NotFoundError, 404, False),
    ],
)
def test_only_transient_litellm_errors_are_retried(cls, status, expected):
    assert is_transient(_litellm_error(cls, status)) is expected


def test_timeouts_and_connection_errors_are_transient():
    assert is_transient(litellm.Timeout(message="t", model="m", llm_provider="openai"))
    assert is_transient(litellm.APIConnectionError(message="c", model="m", llm_provider="openai"))
    assert is_transient(ConnectionResetError())


def test_retry_after_is_read_from_the_response_headers():
    assert retry_after_seconds(_litellm_error(litellm.RateLimitError, 429, {"retry-after": "1.5"})) == 1.5
    assert retry_after_seconds(_litellm_error(litellm.RateLimitError, 429)) is None


class _Flaky:
    def __init__(self, failures: list[BaseException]):
        self.failures = list(failures)
        self.calls = 0

    async def __call__(self):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


async def test_transient_failures_are_retried_until_success_waiting_retry_after():
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    fn = _Flaky([_litellm_error(litellm.RateLimitError, 429, {"retry-after": "0.7"})])
    assert await RetryPolicy(2, sleep=sleep).run(fn, time.monotonic() + 10) == "ok"
    assert fn.calls == 2
    assert waits == [0.7]


async def test_a_bad_request_is_raised_at_once():
    fn = _Flaky([_litellm_error(litellm.BadRequestError, 400)])
    with pytest.raises(litellm.BadRequestError):
        await RetryPolicy(3).run(fn, time.monotonic() + 10)
    assert fn.calls == 1


async def test_attempts_are_bounded():
    async def sleep(seconds: float) -> None:
        pass

    fn = _Flaky([_litellm_error(litellm.InternalServerError, 500) for _ in range(10)])
    with pytest.raises(litellm.InternalServerError):
        await RetryPolicy(2, sleep=sleep).run(fn, time.monotonic() + 10)
    assert fn.calls == 3


async def test_a_retry_after_beyond_the_deadline_is_not_waited_for():
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    fn = _Flaky([_litellm_error(litellm.RateLimitError, 429, {"retry-after": "30"})])
    with pytest.raises(litellm.RateLimitError):
        await RetryPolicy(3, sleep=sleep).run(fn, time.monotonic() + 1.0)
    assert (fn.calls, waits) == (1, [])


async def test_backoff_grows_exponentially_with_jitter():
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    fn = _Flaky([_litellm_error(litellm.InternalServerError, 500) for _ in range(3)])
    await RetryPolicy(3, initial_backoff_s=0.1, sleep=sleep).run(fn, time.monotonic() + 60)
    assert len(waits) == 3
    assert 0.1 <= waits[0] <= 0.2 and 0.2 <= waits[1] <= 0.3 and 0.4 <= waits[2] <= 0.5
