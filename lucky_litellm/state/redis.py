"""The Redis connection shared by the flag and spend stores, and how it lives through outages.

Two clients talk to one Redis: `redis.asyncio` for the request path (one client per event loop,
since an asyncio connection belongs to the loop that opened it) and a synchronous client for the
CLI and for the *syncer*, a daemon thread that keeps this process in step with Redis:

- it re-reads the rollout flags every `REFRESH_S`, so a flag read on the request path is a
  field read of a cached snapshot (no I/O) and a change is seen everywhere within a second;
- it pushes spend recorded locally (settlements, and everything counted during an outage) and
  writes this process's heartbeat, from which budgets share what remains during an outage;
- it is the only one that decides an outage is over: once Redis fails, the request path stops
  calling it (no request waits on a dead Redis more than once per outage), and the syncer
  probes every `RECONNECT_EVERY_S`; when Redis answers it first runs the recovery steps (push
  the outage's spend, re-seed flags an empty Redis lost) and only then declares Redis back.

The syncer's calls have short socket timeouts (`SOCKET_TIMEOUT_S`) and no retries; while the
process serves requests it also pings Redis every 0.1 s, so a dead or paused Redis is noticed
within about 0.6 s. The request path does not use a tight socket timeout of its
own: on a busy event loop a reply can wait in the loop's queue longer than any sensible timeout,
and that must not pass for an outage. Instead an awaited Redis call ends when it is answered or
when the syncer declares the outage (waking every waiting call at once), with `ASYNC_TIMEOUT_S`
as a last bound. Nothing on the request path ever blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import StateUnavailableError

if TYPE_CHECKING:
    import redis
    import redis.asyncio

__all__ = [
    "ASYNC_TIMEOUT_S",
    "HEARTBEAT_S",
    "RECONNECT_EVERY_S",
    "REFRESH_S",
    "SOCKET_TIMEOUT_S",
    "RedisConnection",
    "safe_url",
]

logger = logging.getLogger("lucky_litellm.state")

T = TypeVar("T")

REFRESH_S = 0.3
"""How old the cached flags may get before the syncer reads them again."""
RECONNECT_EVERY_S = 0.5
"""During an outage, how often the syncer tries Redis again."""
SOCKET_TIMEOUT_S = 0.5
"""Connect and read timeout of the syncer's (and the CLI's) calls: how long Redis may take to
answer before it counts as down (a loaded machine must not pass for an outage)."""
ASYNC_TIMEOUT_S = 2.0
"""Last bound on an awaited call; outages normally end waiting calls sooner (see above)."""
HEARTBEAT_S = 1.0
"""How often a serving process refreshes its heartbeat and the spend totals it relies on."""
REPLICA_TTL_S = 10.0
"""A replica whose heartbeat is older than this no longer counts (a crashed one only makes the
others' outage shares smaller for that long)."""
_TICK_S = 0.1

# KEYS[1]: the heartbeat set. ARGV: replica id (empty: only count), ttl in seconds.
# Returns how many replicas other than ARGV[1] are alive, and whether ARGV[1] was written.
_HEARTBEAT = """
if redis.replicate_commands then redis.replicate_commands() end  -- TIME before writes (Redis < 5)
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t - tonumber(ARGV[2]))
if ARGV[1] ~= '' then redis.call('ZADD', KEYS[1], t, ARGV[1]) end
local others = redis.call('ZCARD', KEYS[1])
if ARGV[1] ~= '' then others = others - 1 end
return others
"""


class RedisConnection:
    """One Redis URL and prefix, the clients to reach it, and its outage state (thread-safe)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "lucky:",
        socket_timeout_s: float = SOCKET_TIMEOUT_S,
        reconnect_every_s: float = RECONNECT_EVERY_S,
    ) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url = url
        self.prefix = prefix
        self.replica_id = uuid.uuid4().hex
        """This process's name in the heartbeat set."""
        self._timeout = socket_timeout_s
        self._reconnect_every_s = reconnect_every_s
        self.sync_client: redis.Redis = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        self.outage_errors: tuple[type[BaseException], ...] = (
            redis.exceptions.ConnectionError,  # includes authentication and "loading" errors
            redis.exceptions.TimeoutError,
            redis.exceptions.ReadOnlyError,  # a replica after failover: writes cannot land
            redis.exceptions.OutOfMemoryError,  # maxmemory reached: writes cannot land either
            OSError,
        )
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._down = False
        self._refused = False
        """The outage began with Redis refusing the credentials (a wrong password, not a network)."""
        self._retry_at = 0.0
        self._recovery: list[Callable[[], None]] = []
        self._tickers: list[Callable[[float], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wanted = False
        self.serving = False
        """Set by the request path: only a serving process heartbeats (the CLI does not)."""
        self.replicas: int | None = None
        """Live serving processes, this one included, at the last heartbeat (None: never known)."""
        self._replicas_key = f"{prefix}replicas"
        self._heartbeat_at = float("-inf")
        self._heartbeat = self.sync_client.register_script(_HEARTBEAT)
        self._fork_hooks: list[Callable[[], None]] = []
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _after_fork(ref))

    def __repr__(self) -> str:
        return f"RedisConnection({safe_url(self.url)!r}, prefix={self.prefix!r})"

    @property
    def location(self) -> str:
        """Where the state lives, for people (password hidden)."""
        return f"{safe_url(self.url)} (prefix {self.prefix!r})"

    # -- outage state --------------------------------------------------------------------------

    @property
    def down(self) -> bool:
        return self._down

    def unavailable(self) -> StateUnavailableError:
        if self._refused:
            return StateUnavailableError(
                f"Redis at {safe_url(self.url)} refused the credentials (check the password and user)"
            )
        return StateUnavailableError(f"Redis at {safe_url(self.url)} is unreachable")

    def mark_down(self, exc: BaseException) -> None:
        import redis

        with self._lock:
            if not self._down:
                self._refused = isinstance(exc, redis.exceptions.AuthenticationError)
                logger.warning(
                    "Redis state store at %s %s (%s): using the last known flags and the "
                    "budget outage policy until it is back",
                    safe_url(self.url),
                    "refused the credentials" if self._refused else "is unreachable",
                    type(exc).__name__,
                    extra={"lucky_state_outage": True},  # the CLI, which says it itself, drops it
                )
            self._down = True
            self._retry_at = time.monotonic() + self._reconnect_every_s
            clients = list(self._async_clients.values())
        for client in clients:
            client.wake()  # calls waiting on the dead Redis give up now

    def _mark_up(self) -> None:
        with self._lock:
            was_down, self._down = self._down, False
        if was_down:
            logger.info("Redis state store at %s reconnected", safe_url(self.url))

    def on_recovery(self, step: Callable[[], None]) -> None:
        """Run `step` (sync client, syncer thread) before Redis is declared back after an
        outage; it raises an outage error when Redis is still away."""
        self._recovery.append(step)

    def on_tick(self, ticker: Callable[[float], None]) -> None:
        """Call `ticker(monotonic_now)` from the syncer about every 0.1 s while Redis is up."""
        self._tickers.append(ticker)

    # -- calls ---------------------------------------------------------------------------------

    async def call(self, operation: Callable[[_LoopClient], Awaitable[T]]) -> T:
        """Run `operation` with this loop's asyncio client. During an outage, raise
        `StateUnavailableError` at once, without I/O; when the syncer declares an outage while
        the call waits, raise it then; a failure starts an outage."""
        if self._down:
            raise self.unavailable()
        self.ensure_started()
        client = self._async_client()
        down = client.down_signal()
        task = asyncio.ensure_future(operation(client))
        try:
            await asyncio.wait((task, down), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not task.done():
            task.cancel()
            raise self.unavailable()
        try:
            return task.result()
        except self.outage_errors as exc:
            self.mark_down(exc)
            raise self.unavailable() from None

    def call_sync(self, operation: Callable[[redis.Redis], T]) -> T:
        """Run `operation` with the synchronous client (CLI, syncer; never the event loop).
        Tries Redis even during an outage: an operator's command deserves a real attempt."""
        try:
            result = operation(self.sync_client)
        except self.outage_errors as exc:
            self.mark_down(exc)
            raise self.unavailable() from None
        return result

    def _async_client(self) -> _LoopClient:
        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None:
            import redis.asyncio
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            redis_client = redis.asyncio.Redis.from_url(
                self.url,
                socket_timeout=ASYNC_TIMEOUT_S,
                socket_connect_timeout=ASYNC_TIMEOUT_S,
                retry=Retry(NoBackoff(), 0),
                decode_responses=True,
            )
            client = self._async_clients[loop] = _LoopClient(loop, redis_client)
        return client

    # -- the syncer ----------------------------------------------------------------------------

    def on_fork(self, hook: Callable[[], None]) -> None:
        """Call `hook()` in a child process after `fork` (a pre-forking server): the child is a
        new replica whose syncer is started again on first use."""
        self._fork_hooks.append(hook)

    def _forked(self) -> None:
        self._lock = threading.Lock()
        self._async_clients = weakref.WeakKeyDictionary()
        self.replica_id = uuid.uuid4().hex
        self.serving, self.replicas, self._heartbeat_at = False, None, float("-inf")
        self._thread = None  # threads do not survive fork
        for hook in self._fork_hooks:
            hook()

    def ensure_started(self) -> None:
        """Start the syncer again in a forked child (cheap when it runs)."""
        if self._thread is None and self._wanted and not self._stop.is_set():
            self.start()

    def start(self) -> None:
        """Start the syncer thread (once). It holds only a weak reference: a connection nobody
        uses any more stops its thread."""
        with self._lock:
            self._wanted = True
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(
                target=_sync_forever,
                args=(weakref.ref(self), self._stop),
                name="lucky-state-sync",
                daemon=True,
            )
            self._thread.start()

    def tick(self) -> None:
        """One syncer step: probe during an outage, else run the tickers."""
        now = time.monotonic()
        if self._down:
            if now < self._retry_at:
                return
            try:
                self.sync_client.ping()
                for step in self._recovery:
                    step()
            except self.outage_errors as exc:
                self.mark_down(exc)
                return
            except StateUnavailableError:
                return  # still away (the step's call marked it so): try again later
            except Exception as exc:  # a bug or garbage in Redis must not kill the thread
                logger.warning("state recovery step failed (%s)", exc)
            self._mark_up()
            return
        for ticker in [self._ping, self._beat, *self._tickers]:
            try:
                ticker(now)
            except StateUnavailableError:
                return
            except self.outage_errors as exc:
                self.mark_down(exc)
                return
            except Exception as exc:
                logger.warning("state sync step failed (%s)", exc)

    def _ping(self, now: float) -> None:
        if self.serving:
            self.call_sync(lambda c: c.ping())

    def _beat(self, now: float) -> None:
        if not self.serving or now - self._heartbeat_at < HEARTBEAT_S:
            return
        args: list[str | float] = [self.replica_id, REPLICA_TTL_S]
        others = self.call_sync(lambda c: self._heartbeat(keys=[self._replicas_key], args=args, client=c))
        self.replicas = int(others) + 1
        self._heartbeat_at = now

    def other_replicas(self) -> int:
        """How many other serving processes are alive now (sync read)."""
        others = self.call_sync(
            lambda c: self._heartbeat(keys=[self._replicas_key], args=["", REPLICA_TTL_S], client=c)
        )
        return int(others)

    def close(self) -> None:
        self._stop.set()
        if self.serving and not self._down:
            # leave the fleet at once, so the others' outage shares grow back (best effort)
            with contextlib.suppress(Exception):
                self.sync_client.zrem(self._replicas_key, self.replica_id)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2 * self._timeout + 1)
        self.sync_client.close()
        for client in list(self._async_clients.values()):
            client.close()
        self._async_clients.clear()


class _LoopClient:
    """The asyncio client of one event loop, the signal that wakes the calls waiting on it when
    an outage is declared (from any thread), and the batching of script calls.

    Script calls made in the same turn of the event loop go out as one pipeline (one write, one
    read, one pooled connection): under load many requests reserve at once, and per-command
    overhead, not Redis, would otherwise dominate what a reservation costs."""

    def __init__(self, loop: asyncio.AbstractEventLoop, client: redis.asyncio.Redis) -> None:
        self.loop = loop
        self.redis = client
        self._down: asyncio.Future[None] | None = None
        self._queue: list[_Queued] = []
        self._sending: set[asyncio.Task[None]] = set()

    def eval(
        self, source: str, keys: list[str], args: list[Any], on_orphan: Callable[[Any], None] | None = None
    ) -> asyncio.Future[Any]:
        """Run a Lua script in the next batch; `on_orphan(reply)` gets the reply of a call whose
        caller stopped waiting (the script ran anyway: it may need undoing)."""
        future: asyncio.Future[Any] = self.loop.create_future()
        if not self._queue:
            self.loop.call_soon(self._flush)
        self._queue.append(_Queued(source, keys, args, future, on_orphan))
        return future

    def _flush(self) -> None:
        batch, self._queue = self._queue, []
        task = self.loop.create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Queued]) -> None:
        import redis.exceptions

        try:
            replies = await self._pipeline(batch)
            missing = [item for item, reply in zip(batch, replies, strict=True) if _no_script(reply)]
            if missing:  # a restarted Redis forgot the scripts: load them, send those again
                for source in {item.source for item in missing}:
                    await self.redis.script_load(source)
                retried = dict(zip(map(id, missing), await self._pipeline(missing), strict=True))
                replies = [retried.get(id(item), reply) for item, reply in zip(batch, replies, strict=True)]
        except Exception as exc:
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        except BaseException:  # cancelled (the loop is shutting down): so are the callers
            for item in batch:
                item.future.cancel()
            raise
        for item, reply in zip(batch, replies, strict=True):
            if item.future.cancelled():
                if item.on_orphan is not None and not isinstance(reply, Exception):
                    item.on_orphan(reply)
            elif isinstance(reply, redis.exceptions.RedisError):
                item.future.set_exception(reply)
            else:
                item.future.set_result(reply)

    async def _pipeline(self, batch: list[_Queued]) -> list[Any]:
        pipe = self.redis.pipeline(transaction=False)
        for item in batch:
            pipe.evalsha(_sha(item.source), len(item.keys), *item.keys, *item.args)
        return list(await pipe.execute(raise_on_error=False))

    def down_signal(self) -> asyncio.Future[None]:
        """A future resolved when the next outage is declared (a new one after each outage)."""
        if self._down is None or self._down.done():
            self._down = self.loop.create_future()
        return self._down

    def wake(self) -> None:
        future = self._down
        if future is not None and not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self.loop.call_soon_threadsafe(_resolve, future)

    def close(self) -> None:
        """Close on the client's own loop when that loop still runs; otherwise its sockets go
        with the loop."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if self.loop.is_closed():
            return
        if running is self.loop:
            self.loop.create_task(self.redis.aclose())
        elif self.loop.is_running():
            asyncio.run_coroutine_threadsafe(self.redis.aclose(), self.loop)


@dataclass(slots=True)
class _Queued:
    source: str
    keys: list[str]
    args: list[Any]
    future: asyncio.Future[Any]
    on_orphan: Callable[[Any], None] | None


@functools.lru_cache(maxsize=16)
def _sha(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()


def _no_script(reply: Any) -> bool:
    import redis.exceptions

    return isinstance(reply, redis.exceptions.NoScriptError)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _after_fork(ref: weakref.ref[RedisConnection]) -> None:
    connection = ref()
    if connection is not None:
        connection._forked()


def _sync_forever(ref: weakref.ref[RedisConnection], stop: threading.Event) -> None:
    while not stop.is_set():
        connection = ref()
        if connection is None:
            return
        connection.tick()
        del connection
        stop.wait(_TICK_S)


def safe_url(url: str) -> str:
    """The URL without its password (in the user part or a ``password=`` query), for logs."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        host = netloc.rsplit("@", 1)[-1]
        netloc = (f"{parts.username}:***@" if parts.username else ":***@") + host
    query = parts.query
    if "password" in query.lower():
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in pairs])
    return urlunsplit(parts._replace(netloc=netloc, query=query))
