"""`ResponseCache`: an exact-match answer cache keyed by the normalised request.

Two requests share an entry when they run the same plan (spec and its models) with the same
messages and the same generation parameters; the caller's user and request ids, and keys that
do not change the answer, are left out. Streams are not cached (they pass through). A cached answer
is a copy of the first one, with its routing record marked (`routing_of(resp).cached`), so callers
can tell; it costs nothing and calls no model.

Entries live in this process's memory, bounded (the least recently used is evicted first), or,
with `ResponseCache(state=models.state)` on a Redis state store, in Redis, shared by every process
and proxy replica (``<prefix>cache:<digest>``, expiring after `ttl_s`). A Redis that cannot be
reached is a cache miss, never a failed request.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from ..errors import StateUnavailableError, UsageError
from ..routing import Routing, attach_routing, routing_of
from . import CallNext, Request

if TYPE_CHECKING:
    from ..state import State

__all__ = ["ResponseCache", "request_key"]

_GET = "return redis.call('GET', KEYS[1])"
_SET = "return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])"

_IGNORED = frozenset({"user", "metadata", "api_key", "num_retries", "max_retries", "timeout"})


def request_key(request: Request) -> str:
    """A digest of what decides the answer: spec, models, messages and generation parameters."""
    params = {k: v for k, v in request.kwargs.items() if k not in _IGNORED}
    payload = json.dumps(
        [request.spec, list(request.plan.models), request.messages, params],
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class ResponseCache:
    """Middleware: answer a repeated request from the cache instead of calling a model."""

    def __init__(self, max_entries: int = 1024, *, state: State | None = None, ttl_s: float = 3600.0) -> None:
        if max_entries < 1:
            raise UsageError("max_entries must be at least 1")
        if not ttl_s > 0:
            raise UsageError("ttl_s must be positive")
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._redis = state.connection if state is not None else None
        self._entries: OrderedDict[str, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        self._entries.clear()

    async def __call__(self, request: Request, call_next: CallNext) -> Any:
        if request.stream:
            return await call_next(request)
        key = request_key(request)
        if self._redis is not None:
            return await self._through_redis(key, request, call_next)
        cached = self._entries.get(key)
        if cached is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            return _served_from_cache(cached, request)
        self.misses += 1
        response = await call_next(request)
        self._entries[key] = copy.deepcopy(response)
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return response

    async def _through_redis(self, digest: str, request: Request, call_next: CallNext) -> Any:
        import litellm  # loaded already: a request is running

        connection = self._redis
        assert connection is not None
        key = f"{connection.prefix}cache:{digest}"
        try:
            raw = await connection.call(lambda client: client.eval(_GET, [key], []))
        except StateUnavailableError:
            raw = None
        if raw:
            self.hits += 1
            data = json.loads(raw)
            return _served_from_cache(litellm.ModelResponse(**data), request)
        self.misses += 1
        response = await call_next(request)
        payload = response.model_dump_json() if hasattr(response, "model_dump_json") else None
        if payload is not None:
            ttl_ms = str(int(self.ttl_s * 1000))
            # unreachable: the answer is served all the same, and the next one misses
            with contextlib.suppress(StateUnavailableError):
                await connection.call(lambda client: client.eval(_SET, [key], [payload, ttl_ms]))
        return response


def _served_from_cache(cached: Any, request: Request) -> Any:
    response = copy.deepcopy(cached)
    try:
        original = routing_of(cached)
        winner = original.winner
    except LookupError:
        winner = None
    routing = Routing(
        spec=request.spec,
        strategy=request.plan.strategy,
        models=list(request.plan.models),
        user_id=request.user_id,
        request_id=request.request_id,
    )
    routing.winner = winner
    routing.cached = True
    return attach_routing(response, routing)
