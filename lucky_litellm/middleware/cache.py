"""`ResponseCache`: an exact-match answer cache keyed by the normalised request.

Two requests share an entry when they run the same plan (spec and its models) with the same
messages and the same generation parameters; the caller's user and request ids, and keys that
do not change the answer, are left out. Streams are not cached (they pass through). A cached answer
is a copy of the first one, with its routing record marked (`routing_of(resp).cached`), so callers
can tell; it costs nothing and calls no model.

Entries live in this process's memory, bounded (the least recently used is evicted first).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections import OrderedDict
from typing import Any

from ..routing import Routing, attach_routing, routing_of
from . import CallNext, Request

__all__ = ["ResponseCache", "request_key"]

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

    def __init__(self, max_entries: int = 1024) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[str, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        self._entries.clear()

    async def __call__(self, request: Request, call_next: CallNext) -> Any:
        if request.stream:
            return await call_next(request)
        key = request_key(request)
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
