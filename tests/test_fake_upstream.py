"""The fake OpenAI-compatible upstream, driven by real litellm calls (no mocks).

Besides checking the fake, these tests pin down which litellm exception each upstream fault
becomes, which the retry and strategy code relies on.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import aiohttp
import litellm
import openai
import pytest

from lucky_litellm.testing import Behavior, FakeUpstream

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# older litellm has no MidStreamFallbackError: a broken stream raises another openai.APIError there
MidStreamFallbackError = getattr(litellm.exceptions, "MidStreamFallbackError", openai.APIError)

MESSAGES = [{"role": "user", "content": "what is the capital of France"}]


async def ask(up: FakeUpstream | str, model: str, **kwargs: Any) -> Any:
    """One litellm call to the fake (or a base URL), with litellm's retries off so each fault shows once."""
    return await litellm.acompletion(
        model=f"openai/{model}",
        api_base=up if isinstance(up, str) else up.base_url,
        api_key="sk-fake",
        num_retries=0,
        max_retries=0,
        **{"messages": MESSAGES, **kwargs},
    )


async def ask_stream(up: FakeUpstream, model: str, **kwargs: Any) -> tuple[Any, list[Any]]:
    stream = await ask(up, model, stream=True, stream_options={"include_usage": True}, **kwargs)
    return stream, [chunk async for chunk in stream]


def text_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


async def raw_sse(up: FakeUpstream, model: str) -> list[bytes]:
    """The SSE events exactly as sent, bypassing litellm's stream wrapper."""
    body = {"model": model, "stream": True, "messages": MESSAGES}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{up.base_url}/chat/completions", json=body) as response,
    ):
        data = await response.read()
    return [event for event in data.split(b"\n\n") if event]


# --- answers -----------------------------------------------------------------------------


async def test_non_stream_answer_has_scripted_content_usage_and_cost(fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="Paris", prompt_tokens=10, completion_tokens=5))

    response = await ask(fake_upstream, "gpt-4.1-mini")

    assert response.choices[0].message.content == "Paris"
    assert response.choices[0].finish_reason == "stop"
    assert response.model == "gpt-4.1-mini"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (10, 5)
    assert response._hidden_params["response_cost"] > 0


async def test_unscripted_model_answers_with_its_name_and_counted_tokens(fake_upstream):
    response = await ask(fake_upstream, "some-model")

    assert response.choices[0].message.content == "answer from some-model"
    assert response.usage.completion_tokens == 3
    assert response.usage.prompt_tokens > 0


async def test_stream_sends_word_chunks_finish_reason_and_usage(fake_upstream):
    fake_upstream.script("gpt-4.1-mini", Behavior(content="the answer is Paris", completion_tokens=4))

    stream, chunks = await ask_stream(fake_upstream, "gpt-4.1-mini")

    assert text_of(chunks) == "the answer is Paris"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    assert stream.received_finish_reason == "stop"
    assert chunks[-1].usage.completion_tokens == 4


async def test_raw_stream_is_one_event_per_word_then_finish_usage_and_done(fake_upstream):
    fake_upstream.script("m", Behavior(content="a b c"))

    events = await raw_sse(fake_upstream, "m")

    assert len(events) == 5  # 3 words, finish chunk, [DONE] (no usage chunk: not requested)
    assert b'"finish_reason":"stop"' in events[3]
    assert events[-1] == b"data: [DONE]"


async def test_response_model_overrides_the_echoed_model(fake_upstream):
    fake_upstream.script("alias", Behavior(response_model="gpt-4.1-nano"))

    response = await ask(fake_upstream, "alias")

    assert response.model == "gpt-4.1-nano"


async def test_calls_record_model_body_stream_flag_and_headers(fake_upstream):
    await ask(fake_upstream, "m", temperature=0.5)
    await ask_stream(fake_upstream, "m")

    first, second = fake_upstream.calls
    assert (first.model, first.stream, first.body["temperature"]) == ("m", False, 0.5)
    assert first.headers["Authorization"] == "Bearer sk-fake"
    assert second.stream is True
    assert (first.outcome, second.outcome) == ("ok", "ok")
    assert fake_upstream.call_count("m") == fake_upstream.call_count() == 2


async def test_models_endpoint_lists_scripted_models(fake_upstream):
    fake_upstream.script("gpt-a", Behavior())
    fake_upstream.script("gpt-b", Behavior(status=500))

    async with aiohttp.ClientSession() as session, session.get(f"{fake_upstream.base_url}/models") as r:
        listing = await r.json()

    assert [m["id"] for m in listing["data"]] == ["gpt-a", "gpt-b"]


# --- faults, and the litellm exception each becomes -----------------------------------------


async def test_500_raises_litellm_internal_server_error(fake_upstream):
    fake_upstream.script("m", Behavior(status=500, error_message="boom"))

    with pytest.raises(litellm.InternalServerError) as caught:
        await ask(fake_upstream, "m")

    assert caught.value.status_code == 500
    assert "boom" in str(caught.value)


async def test_503_raises_litellm_service_unavailable(fake_upstream):
    fake_upstream.script("m", Behavior(status=503))

    with pytest.raises(litellm.ServiceUnavailableError) as caught:
        await ask(fake_upstream, "m")

    assert caught.value.status_code == 503


async def test_429_raises_rate_limit_error_carrying_retry_after(fake_upstream):
    fake_upstream.script("m", Behavior(status=429, retry_after=0.2))

    with pytest.raises(litellm.RateLimitError) as caught:
        await ask(fake_upstream, "m")

    assert caught.value.status_code == 429
    assert caught.value.litellm_response_headers["retry-after"] == "0.2"


async def test_408_raises_litellm_timeout(fake_upstream):
    fake_upstream.script("m", Behavior(status=408))

    with pytest.raises(litellm.Timeout) as caught:
        await ask(fake_upstream, "m")

    assert caught.value.status_code == 408


async def test_400_raises_bad_request_error(fake_upstream):
    fake_upstream.script("m", Behavior(status=400))

    with pytest.raises(litellm.BadRequestError):
        await ask(fake_upstream, "m")


async def test_error_status_on_a_stream_request_raises_before_any_chunk(fake_upstream):
    fake_upstream.script("m", Behavior(status=503))

    with pytest.raises(litellm.ServiceUnavailableError):
        await ask_stream(fake_upstream, "m")


async def test_malformed_body_raises_internal_server_error(fake_upstream):
    fake_upstream.script("m", Behavior(malformed=True))

    with pytest.raises(litellm.InternalServerError):
        await ask(fake_upstream, "m")

    assert fake_upstream.calls[0].outcome == "malformed"


async def test_malformed_stream_event_raises_mid_stream_error(fake_upstream):
    fake_upstream.script("m", Behavior(malformed=True))

    with pytest.raises(MidStreamFallbackError):
        await ask_stream(fake_upstream, "m")


async def test_malformed_error_page_keeps_its_status(fake_upstream):
    fake_upstream.script("m", Behavior(status=502, malformed=True))

    with pytest.raises(litellm.BadGatewayError):
        await ask(fake_upstream, "m")


async def test_dropped_connection_raises_connection_error_as_internal_server_error(fake_upstream):
    fake_upstream.script("m", Behavior(drop=True))

    with pytest.raises(litellm.InternalServerError, match="Connection error"):
        await ask(fake_upstream, "m")

    await fake_upstream.await_idle()
    assert fake_upstream.calls[0].outcome == "dropped"
    assert fake_upstream.cancelled_count() == 0


async def test_stream_cut_after_sends_n_chunks_and_no_finish_reason_or_done(fake_upstream):
    fake_upstream.script("m", Behavior(content="a b c d", stream_cut_after=2))

    events = await raw_sse(fake_upstream, "m")

    assert len(events) == 2
    assert not any(b'"finish_reason":"stop"' in e or b"[DONE]" in e for e in events)


async def test_cut_stream_looks_complete_in_litellm_except_received_finish_reason(fake_upstream):
    """litellm up to 1.109 invents a final "stop" chunk for a cleanly ended stream; only
    `received_finish_reason` tells the truncation apart, so that is what callers must check.
    From 1.110 litellm raises `MidStreamFallbackError` instead: the engine handles both."""
    fake_upstream.script("m", Behavior(content="a b c d", stream_cut_after=2))

    try:
        stream, chunks = await ask_stream(fake_upstream, "m")
    except MidStreamFallbackError:
        assert fake_upstream.calls[0].outcome == "cut"
        return
    assert text_of(chunks) == "a b"
    assert stream.received_finish_reason is None
    assert fake_upstream.calls[0].outcome == "cut"


async def test_stream_cut_with_reset_raises_mid_stream_error(fake_upstream):
    fake_upstream.script("m", Behavior(content="a b c d", stream_cut_after=2, stream_cut_reset=True))

    with pytest.raises(MidStreamFallbackError):
        await ask_stream(fake_upstream, "m")


# --- scripting ----------------------------------------------------------------------------


async def test_sequence_is_played_in_order_and_the_last_behavior_repeats(fake_upstream):
    fake_upstream.script("m", [Behavior(status=503), Behavior(content="ok")])

    with pytest.raises(litellm.ServiceUnavailableError):
        await ask(fake_upstream, "m")
    answers = [(await ask(fake_upstream, "m")).choices[0].message.content for _ in range(2)]

    assert answers == ["ok", "ok"]
    assert [c.index for c in fake_upstream.calls] == [0, 1, 2]


async def test_default_behavior_applies_to_unscripted_models(fake_upstream):
    fake_upstream.default = Behavior(content="fallback answer")
    fake_upstream.script("scripted", Behavior(content="scripted answer"))

    unscripted = await ask(fake_upstream, "other")
    scripted = await ask(fake_upstream, "scripted")

    assert unscripted.choices[0].message.content == "fallback answer"
    assert scripted.choices[0].message.content == "scripted answer"


async def test_latency_fn_gets_the_per_model_call_index(fake_upstream):
    seen: list[int] = []

    def latency(index: int) -> float:
        seen.append(index)
        return 150 if index == 1 else 0

    fake_upstream.script("m", Behavior(latency_fn=latency))
    for _ in range(3):
        await ask(fake_upstream, "m")

    assert seen == [0, 1, 2]
    assert fake_upstream.calls[1].duration_ms >= 150


async def test_latency_of_request_gets_the_call_index_and_the_request_body(fake_upstream):
    seen: list[tuple[int, str]] = []

    def latency(index: int, body: Any) -> float:
        seen.append((index, body["messages"][-1]["content"]))
        return 150 if index == 0 else 0

    fake_upstream.script("m", Behavior(latency_of_request=latency, latency_fn=lambda index: 10_000))
    for _ in range(2):
        await ask(fake_upstream, "m")

    assert seen == [(0, MESSAGES[-1]["content"]), (1, MESSAGES[-1]["content"])]  # replaces latency_fn
    assert fake_upstream.calls[0].duration_ms >= 150


async def test_latency_delays_the_answer(fake_upstream):
    fake_upstream.script("m", Behavior(latency_ms=100))
    started = time.monotonic()

    await ask(fake_upstream, "m")

    assert time.monotonic() - started >= 0.1


async def test_reset_clears_scripts_records_and_counters(fake_upstream):
    fake_upstream.script("m", Behavior(content="scripted"))
    await ask(fake_upstream, "m")

    fake_upstream.reset()

    assert fake_upstream.calls == []
    assert fake_upstream.call_count() == fake_upstream.max_in_flight() == 0
    assert (await ask(fake_upstream, "m")).choices[0].message.content == "answer from m"


def tagged(marker: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"hi {marker}"}]


async def test_a_request_of_an_earlier_marker_is_a_stray_kept_out_of_the_records(fake_upstream):
    fake_upstream.reset(marker="test-one")
    fake_upstream.reset(marker="test-two")  # the next test: a shared upstream, a fresh marker
    fake_upstream.script("m", [Behavior(status=503), Behavior(content="scripted")])

    late = await ask(fake_upstream, "m", messages=tagged("test-one"))  # the first test's, read only now

    assert late.choices[0].message.content == "answer from m"  # a plain answer, the script unspent
    assert [call.body["messages"][0]["content"] for call in fake_upstream.strays] == ["hi test-one"]
    assert fake_upstream.calls == [] and fake_upstream.call_count() == fake_upstream.max_in_flight() == 0
    with pytest.raises(litellm.ServiceUnavailableError):
        await ask(fake_upstream, "m", messages=tagged("test-two"))  # this test's own: counted, scripted
    await ask(fake_upstream, "m")  # no marker at all (a call the code under test made itself): counted
    assert [call.behavior.content for call in fake_upstream.calls] == [None, "scripted"]


async def test_a_reset_without_a_marker_keeps_the_current_one(fake_upstream):
    fake_upstream.reset(marker="test-one")
    fake_upstream.reset(marker="test-two")
    fake_upstream.reset()

    await ask(fake_upstream, "m", messages=tagged("test-two"))
    await ask(fake_upstream, "m", messages=tagged("test-one"))

    assert [call.body["messages"][0]["content"] for call in fake_upstream.calls] == ["hi test-two"]
    assert [call.body["messages"][0]["content"] for call in fake_upstream.strays] == ["hi test-one"]
    with pytest.raises(ValueError, match="marker"):
        fake_upstream.reset(marker="not one word")


async def test_max_recorded_calls_keeps_the_latest_calls_and_exact_counts():
    async with FakeUpstream(max_recorded_calls=2) as up:
        for model in ("a", "b", "c"):
            await ask(up, model)

        assert [c.model for c in up.calls] == ["b", "c"]
        assert up.call_count() == 3
        assert up.call_count("a") == 1


def test_behavior_rejects_impossible_values():
    with pytest.raises(ValueError):
        Behavior(status=999)
    with pytest.raises(ValueError):
        Behavior(latency_ms=-1)
    with pytest.raises(ValueError):
        Behavior(stream_cut_reset=True)


# --- concurrency, cancellation and waiting --------------------------------------------------


async def test_hang_until_client_timeout_raises_timeout_and_counts_cancelled(fake_upstream):
    fake_upstream.script("h", Behavior(hang=True))

    with pytest.raises(litellm.Timeout):
        await ask(fake_upstream, "h", timeout=0.3)

    await fake_upstream.await_idle()
    assert fake_upstream.cancelled_count("h") == 1
    assert fake_upstream.calls[0].outcome == "cancelled"


async def test_cancelled_client_tasks_are_counted_and_leave_nothing_in_flight(fake_upstream):
    """A race loser is cancelled mid-latency: the server must notice the disconnect."""
    fake_upstream.script("slow", Behavior(latency_ms=30_000))
    tasks = [asyncio.create_task(ask(fake_upstream, "slow")) for _ in range(5)]
    await fake_upstream.await_calls(5, "slow")

    assert fake_upstream.in_flight == 5
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await fake_upstream.await_idle()

    assert fake_upstream.max_in_flight("slow") == 5
    assert fake_upstream.cancelled_count("slow") == 5


async def test_client_leaving_mid_stream_counts_cancelled(fake_upstream):
    fake_upstream.script("m", Behavior(content="one two three four five six", chunk_delay_ms=200))
    body = {"model": "m", "stream": True, "messages": MESSAGES}

    async with aiohttp.ClientSession() as session:
        response = await session.post(f"{fake_upstream.base_url}/chat/completions", json=body)
        await response.content.readuntil(b"\n\n")
        response.close()

    await fake_upstream.await_idle()
    assert fake_upstream.cancelled_count("m") == 1


def test_wait_idle_blocks_until_running_requests_finish(fake_upstream):
    fake_upstream.script("m", Behavior(latency_ms=200))
    worker = threading.Thread(target=lambda: asyncio.run(ask(fake_upstream, "m")))
    worker.start()
    try:
        fake_upstream.wait_for_calls(1, "m")
        assert fake_upstream.in_flight == 1

        fake_upstream.wait_idle()

        assert fake_upstream.in_flight == 0
        assert fake_upstream.calls[0].outcome == "ok"
    finally:
        worker.join(10)


def test_wait_for_calls_raises_timeout_error_when_calls_do_not_come(fake_upstream):
    with pytest.raises(TimeoutError, match="expected 1 calls to 'm'"):
        fake_upstream.wait_for_calls(1, "m", timeout=0.05)


async def test_await_calls_leaves_the_callers_loop_free(fake_upstream):
    """The request is sent by a task on the same loop, so a blocking wait would time out."""
    task = asyncio.create_task(ask(fake_upstream, "m"))

    await fake_upstream.await_calls(1, "m", timeout=5.0)
    await task

    assert fake_upstream.call_count("m") == 1


async def test_await_idle_raises_timeout_error_while_a_request_hangs(fake_upstream):
    fake_upstream.script("h", Behavior(hang=True))
    task = asyncio.create_task(ask(fake_upstream, "h"))
    await fake_upstream.await_calls(1)

    with pytest.raises(TimeoutError, match="not idle"):
        await fake_upstream.await_idle(timeout=0.05)

    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_stop_with_a_hanging_request_is_prompt_and_fails_the_client():
    up = FakeUpstream().start()
    up.script("h", Behavior(hang=True))
    task = asyncio.create_task(ask(up, "h"))
    await up.await_calls(1)

    started = time.monotonic()
    await asyncio.to_thread(up.stop)

    assert time.monotonic() - started < 2.0
    with pytest.raises(litellm.InternalServerError, match="Connection error"):
        await asyncio.wait_for(task, 5.0)
    assert up.calls[0].outcome == "stopped"
    assert up.in_flight == 0


async def test_async_context_manager_serves_and_stops():
    async with FakeUpstream() as up:
        response = await ask(up, "m")
        port = up.port

    assert response.choices[0].message.content == "answer from m"
    assert not up.running
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_litellm_reuses_keep_alive_connections_for_sequential_calls(fake_upstream):
    for _ in range(5):
        await ask(fake_upstream, "m")

    assert fake_upstream.connections_opened < 5


# --- command line ---------------------------------------------------------------------------


def test_module_cli_prints_ready_serves_scripted_failures_and_stops_on_sigterm():
    process = subprocess.Popen(
        [sys.executable, "-m", "lucky_litellm.testing", "--port", "0", "--fail-model", "bad:503"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready, base_url = process.stdout.readline().split()
        assert ready == "READY"

        assert asyncio.run(ask(base_url, "good")).choices[0].message.content == "answer from good"
        with pytest.raises(litellm.ServiceUnavailableError):
            asyncio.run(ask(base_url, "bad"))

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
