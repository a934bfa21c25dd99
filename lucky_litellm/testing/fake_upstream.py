"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests, demos and benchmarks.

Real `litellm.acompletion(model="openai/<name>", api_base=up.base_url, api_key="sk-fake")`
calls go through it, so tests exercise litellm's own HTTP client, parsing and exception
mapping rather than a mock. It runs aiohttp's low-level server on its own event loop in a
daemon thread: the same object then works from sync tests, async tests on any loop, and
benchmarks, and a test's loop being busy can never slow the upstream down.

    with FakeUpstream() as up:
        up.script("gpt-4.1-mini", Behavior(content="Paris", latency_ms=20))
        up.script("gpt-4.1", [Behavior(status=503), Behavior(content="ok")])
        await litellm.acompletion(model="openai/gpt-4.1-mini", api_base=up.base_url, ...)
        up.wait_idle()
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from aiohttp import web

from . import payloads
from .behavior import Behavior, Call, Outcome
from .state import UpstreamState

__all__ = ["FakeUpstream"]

_JSON = {"Content-Type": "application/json"}
_SSE = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
_MODELS_PATHS = frozenset({"/v1/models", "/models"})
_MESSAGES_PATHS = frozenset({"/v1/messages", "/messages"})
"""Anthropic's Messages API: the same scripted behaviors, in Anthropic's wire shapes."""
_SHUTDOWN_GRACE_S = 1.0
_LISTEN_BACKLOG = 4096


class _CountingServer(web.Server):
    """aiohttp's low-level server, counting TCP connections so tests can see reuse and leaks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opened = 0
        self.closed = 0

    def connection_made(self, handler: Any, transport: asyncio.Transport) -> None:
        self.opened += 1
        super().connection_made(handler, transport)

    def connection_lost(self, handler: Any, exc: BaseException | None = None) -> None:
        self.closed += 1
        super().connection_lost(handler, exc)


class FakeUpstream:
    """Scriptable fake OpenAI API. Start with `with`, `async with`, or `start()`/`stop()`.

    Models never scripted answer with `default` (a plain answer echoing the model name).
    `script(model, [b1, b2])` answers that model's calls with b1, then b2 for every later call.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        default: Behavior | None = None,
        max_recorded_calls: int | None = None,
    ) -> None:
        """`max_recorded_calls` keeps only the latest N in `calls` (counters stay exact), so a
        long benchmark does not hold every request body in memory."""
        self.host = host
        self._requested_port = port
        self._state = UpstreamState(max_recorded_calls)
        if default is not None:
            self._state.default = default
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.ServerRunner | None = None
        self._server: _CountingServer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._ids = itertools.count(1)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeUpstream:
        """Bind the port and serve from a background thread; returns once listening."""
        if self._thread is not None:
            raise RuntimeError("FakeUpstream is already running")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._requested_port))
        except BaseException:
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        self._stopping = False
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=self._serve_forever, args=(loop,), name="fake-upstream", daemon=True)
        self._loop, self._thread = loop, thread
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._setup(sock), loop).result(timeout=10)
        except BaseException:
            sock.close()
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving: running requests are cut off and every connection is closed."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if threading.current_thread() is thread:
            raise RuntimeError("FakeUpstream.stop() called from the server's own thread")
        try:
            if not loop.is_closed():
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=timeout)
        finally:
            if not loop.is_closed():
                loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            self._loop = self._thread = None
            self._runner = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> FakeUpstream:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeUpstream has not been started")
        return self._port

    @property
    def base_url(self) -> str:
        """OpenAI-style base URL including `/v1`, for `api_base=`."""
        return f"http://{self.host}:{self.port}/v1"

    # --- scripting and inspection (thread-safe) ---------------------------------------------

    def script(self, model: str, behaviors: Behavior | Sequence[Behavior]) -> None:
        """Answer `model`'s calls with `behaviors` in order; the last one repeats."""
        self._state.script(model, behaviors)

    @property
    def default(self) -> Behavior:
        """Behavior for models that were never scripted."""
        return self._state.default

    @default.setter
    def default(self, behavior: Behavior) -> None:
        self._state.default = behavior

    def reset(self, *, marker: str | None = None) -> None:
        """Clear scripts (default included) and every record and counter.

        `marker` scopes the records for an upstream shared by several tests. A request can be
        written by one test and read here only after the next test's reset (a race loser, a
        hedge, background work still on its way): a plain reset would count it for the new test.
        Give each test a fresh marker (one word of letters, digits, `_-.:`, none inside another:
        a uuid4 hex, say) and put it in every request it sends (in a message): a request whose
        body carries an earlier marker but not the current one is then a stray, answered with a
        plain `Behavior()` but kept out of `calls`, every counter, the scripts and the waits
        (`strays` lists it). Requests without any marker are counted as usual, so a call the code
        under test makes on its own is never hidden. Without `marker`, the current one stays.
        """
        self._state.reset(marker)

    @property
    def calls(self) -> list[Call]:
        """Snapshot of the calls received, in arrival order (the latest `max_recorded_calls`)."""
        return self._state.calls

    @property
    def strays(self) -> list[Call]:
        """Requests since the last reset that carried an earlier `reset(marker=...)`'s marker."""
        return self._state.strays

    def call_count(self, model: str | None = None) -> int:
        return self._state.call_count(model)

    @property
    def in_flight(self) -> int:
        """Requests being handled right now (a finished answer no longer counts)."""
        return self._state.in_flight

    def max_in_flight(self, model: str | None = None) -> int:
        """High-water mark of concurrent requests, for one model or all."""
        return self._state.max_in_flight(model)

    @property
    def connections_opened(self) -> int:
        """TCP connections accepted since start; equal to the call count means no keep-alive reuse."""
        return self._server.opened if self._server is not None else 0

    @property
    def open_connections(self) -> int:
        """TCP connections open right now (idle keep-alive ones included)."""
        server = self._server
        return 0 if server is None else server.opened - server.closed

    def cancelled_count(self, model: str | None = None) -> int:
        """Requests whose client went away before the answer was complete."""
        return self._state.cancelled_count(model)

    def wait_for_calls(self, n: int, model: str | None = None, timeout: float = 5.0) -> None:
        """Block until at least `n` calls (to `model`, or in total) arrived; else TimeoutError."""
        self._refuse_own_thread()
        self._state.wait(
            self._state.calls_predicate(n, model),
            timeout,
            lambda: self._state.describe_calls(n, model, timeout),
        )

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Block until no request is in flight; else TimeoutError."""
        self._refuse_own_thread()
        self._state.wait(self._state.idle_predicate(), timeout, lambda: self._state.describe_idle(timeout))

    async def await_calls(self, n: int, model: str | None = None, timeout: float = 5.0) -> None:
        """`wait_for_calls` without blocking the caller's event loop."""
        await self._state.await_(
            self._state.calls_predicate(n, model),
            timeout,
            lambda: self._state.describe_calls(n, model, timeout),
        )

    async def await_idle(self, timeout: float = 5.0) -> None:
        """`wait_idle` without blocking the caller's event loop."""
        await self._state.await_(
            self._state.idle_predicate(), timeout, lambda: self._state.describe_idle(timeout)
        )

    def _refuse_own_thread(self) -> None:
        if threading.current_thread() is self._thread:
            raise RuntimeError("blocking wait on the FakeUpstream thread would deadlock")

    # --- server thread ---------------------------------------------------------------------

    def _serve_forever(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _setup(self, sock: socket.socket) -> None:
        server = _CountingServer(self._handle, handler_cancellation=True, access_log=None)
        self._server = server
        runner = web.ServerRunner(server, shutdown_timeout=_SHUTDOWN_GRACE_S)
        await runner.setup()
        self._runner = runner
        await web.SockSite(runner, sock, backlog=_LISTEN_BACKLOG).start()

    async def _shutdown(self) -> None:
        self._stopping = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_SHUTDOWN_GRACE_S)
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if self._stopping:  # arrived on a kept-alive connection after stop() cancelled the others
            body = payloads.error_body(503, "fake upstream is stopping")
            return web.Response(status=503, body=body, headers={**_JSON, "Connection": "close"})
        path = request.path
        if request.method == "POST" and path in _CHAT_PATHS:
            return await self._chat(request)
        if request.method == "POST" and path in _MESSAGES_PATHS:
            return await self._chat(request, anthropic=True)
        if request.method == "GET" and path in _MODELS_PATHS:
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "fake-upstream"}
                for m in self._state.scripted_models()
            ]
            return web.Response(body=payloads.dumps({"object": "list", "data": data}), headers=_JSON)
        return web.Response(status=404, body=payloads.error_body(404, f"no route {path}"), headers=_JSON)

    async def _chat(self, request: web.BaseRequest, *, anthropic: bool = False) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = payloads.loads(raw)
        except ValueError:
            return web.Response(status=400, body=payloads.error_body(400, "body is not JSON"), headers=_JSON)
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return web.Response(status=400, body=payloads.error_body(400, "missing model"), headers=_JSON)
        stream = bool(body.get("stream"))
        call = self._state.begin(body["model"], body, stream, dict(request.headers), raw)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            return await self._answer(request, call, anthropic)
        except ConnectionError:  # the client left while we were writing
            return await self._break_connection(request, call, "cancelled")
        finally:
            # Reached with the call still open only when the handler was cancelled or failed.
            self._state.end(call, "stopped" if self._stopping else "cancelled")
            if task is not None:
                self._tasks.discard(task)

    async def _answer(self, request: web.BaseRequest, call: Call, anthropic: bool) -> web.StreamResponse:
        behavior = call.behavior
        if behavior.hang:
            await asyncio.get_running_loop().create_future()  # until cancelled
        delay = behavior.latency_for(call.index, call.body)
        if delay > 0:
            await asyncio.sleep(delay)
        if behavior.drop:
            return await self._break_connection(request, call, "dropped")
        headers = dict(behavior.headers) if behavior.headers else {}
        if behavior.retry_after is not None:
            headers["Retry-After"] = f"{behavior.retry_after:g}"
        if behavior.status != 200 and not (call.stream and behavior.stream_error_after is not None):
            self._state.end(call, "error")
            if behavior.malformed:
                headers["Content-Type"] = "text/html"
                return web.Response(
                    status=behavior.status, body=payloads.MALFORMED_ERROR_PAGE, headers=headers
                )
            error_body = payloads.anthropic_error_body if anthropic else payloads.error_body
            body = error_body(behavior.status, behavior.error_message)
            return web.Response(status=behavior.status, body=body, headers={**headers, **_JSON})
        if anthropic:
            return await self._anthropic(request, call, headers)
        if call.stream:
            return await self._stream(request, call, headers)
        if behavior.malformed:
            self._state.end(call, "malformed")
            return web.Response(body=payloads.MALFORMED_BODY, headers={**headers, **_JSON})
        content = self._content(call)
        tools = behavior.tool_calls
        body = payloads.completion(
            call_id=f"chatcmpl-fake-{next(self._ids)}",
            created=int(time.time()),
            model=behavior.response_model or call.model,
            content=None if tools is not None else content,
            finish_reason="tool_calls" if tools is not None else behavior.finish_reason,
            usage=self._usage(call, "" if tools is not None else content),
            tool_calls=tools,
            empty_choices=behavior.empty_choices,
        )
        self._state.end(call, "ok")
        return web.Response(body=body, headers={**headers, **_JSON})

    async def _stream(
        self, request: web.BaseRequest, call: Call, headers: dict[str, str]
    ) -> web.StreamResponse:
        behavior = call.behavior
        response = web.StreamResponse(headers={**headers, **_SSE})
        await response.prepare(request)
        if behavior.malformed:
            await response.write(payloads.MALFORMED_EVENT)
            self._state.end(call, "malformed")
            await response.write_eof()
            return response
        content = self._content(call)
        meta: dict[str, Any] = {
            "call_id": f"chatcmpl-fake-{next(self._ids)}",
            "created": int(time.time()),
            "model": behavior.response_model or call.model,
        }
        words = payloads.split_words(content)
        events = [
            payloads.chunk_event(
                **meta, delta={"role": "assistant", "content": word} if i == 0 else {"content": word}
            )
            for i, word in enumerate(words)
        ]
        if behavior.first_chunk_delay_ms > 0:
            await asyncio.sleep(behavior.first_chunk_delay_ms / 1000.0)
        failed_after = behavior.stream_error_after
        if failed_after is not None:
            await self._send(response, events[:failed_after], behavior.chunk_delay_ms)
            self._state.end(call, "error")
            await response.write(payloads.error_event(behavior.status, behavior.error_message))
            await response.write_eof()
            return response
        cut = behavior.stream_cut_after
        if cut is not None:
            await self._send(response, events[:cut], behavior.chunk_delay_ms)
            if behavior.stream_cut_reset:
                return await self._break_connection(request, call, "cut")
            self._state.end(call, "cut")
            await response.write_eof()
            return response
        if not events:
            events.append(payloads.chunk_event(**meta, delta={"role": "assistant", "content": ""}))
        await self._send(response, events, behavior.chunk_delay_ms)
        tail = [payloads.chunk_event(**meta, delta={}, finish_reason=behavior.finish_reason)]
        options = call.body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            tail.append(payloads.chunk_event(**meta, usage=self._usage(call, content)))
        tail.append(payloads.DONE)
        if behavior.chunk_delay_ms > 0:
            await asyncio.sleep(behavior.chunk_delay_ms / 1000.0)
        # Counted as done before the last bytes leave, so a client that saw [DONE] sees it idle.
        self._state.end(call, "ok")
        await response.write(b"".join(tail))
        await response.write_eof()
        return response

    async def _anthropic(
        self, request: web.BaseRequest, call: Call, headers: dict[str, str]
    ) -> web.StreamResponse:
        """A text answer in Anthropic's shape: one message, or its event stream."""
        behavior = call.behavior
        content = self._content(call)
        usage = self._usage(call, content)
        call_id = f"msg_fake_{next(self._ids)}"
        model = behavior.response_model or call.model
        if not call.stream:
            self._state.end(call, "ok")
            finish = behavior.finish_reason
            body = payloads.anthropic_message(
                call_id=call_id, model=model, content=content, finish_reason=finish, usage=usage
            )
            return web.Response(body=body, headers={**headers, **_JSON})
        response = web.StreamResponse(headers={**headers, **_SSE})
        await response.prepare(request)
        words = payloads.split_words(content)
        failed_after = behavior.stream_error_after
        if failed_after is not None:
            words = words[:failed_after]
        events, tail = payloads.anthropic_events(
            call_id=call_id,
            model=model,
            words=words,
            finish_reason=behavior.finish_reason,
            usage=usage,
            error=None if failed_after is None else (behavior.status, behavior.error_message),
        )
        await self._send(response, events, behavior.chunk_delay_ms)
        self._state.end(call, "ok" if failed_after is None else "error")
        await response.write(b"".join(tail))
        await response.write_eof()
        return response

    @staticmethod
    async def _send(response: web.StreamResponse, events: list[bytes], delay_ms: float) -> None:
        if delay_ms <= 0:
            if events:
                await response.write(b"".join(events))
            return
        for i, event in enumerate(events):
            if i:
                await asyncio.sleep(delay_ms / 1000.0)
            await response.write(event)

    async def _break_connection(self, request: web.BaseRequest, call: Call, outcome: Outcome) -> Any:
        """Close the socket with no (further) response; aiohttp then cancels this handler."""
        self._state.end(call, outcome)
        transport = request.transport
        if transport is not None:
            transport.close()
        await asyncio.get_running_loop().create_future()  # until aiohttp notices and cancels us

    def _content(self, call: Call) -> str:
        content = call.behavior.content
        return f"answer from {call.model}" if content is None else content

    def _usage(self, call: Call, content: str) -> dict[str, Any]:
        behavior = call.behavior
        prompt = behavior.prompt_tokens
        if prompt is None:
            prompt = payloads.count_prompt_tokens(call.body)
        completion = behavior.completion_tokens
        if completion is None:
            completion = len(content.split())
        limit = call.body.get("max_completion_tokens") or call.body.get("max_tokens")
        if behavior.honor_max_tokens and isinstance(limit, int) and limit > 0:
            completion = min(completion, limit)  # a real model stops at max_tokens
        return payloads.usage(prompt, completion, behavior.cached_tokens)
