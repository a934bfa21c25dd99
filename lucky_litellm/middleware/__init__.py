"""Middleware: code that wraps every request, in the Starlette/httpx style.

    async def mw(request: Request, call_next: CallNext) -> Any:
        request.messages = [...]            # before: see or change messages and kwargs
        response = await call_next(request)  # the rest of the chain, then the engine
        return response                      # after: see or change the answer (or the stream)

`Models.use(mw)` (or ``middleware:`` entries in models.yaml naming importable objects) appends to
the chain; the first added runs outermost. A middleware may answer without calling `call_next`
(a cache), call it once, or wrap what it returns; a stream (`stream=True`) comes back as an async
iterator and passes through as one. What a middleware raises on its own account becomes a
`MiddlewareError` naming it; errors of the request (budget, every model failing) pass through.

An empty chain is not run at all: the engine is called directly, so it costs nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigIssue, MiddlewareError, UsageError

if TYPE_CHECKING:
    from ..plan import Plan

__all__ = [
    "CallNext",
    "Middleware",
    "Request",
    "load_configured",
    "load_middleware",
    "middleware_name",
    "run_chain",
]


@dataclass
class Request:
    """One request as middleware sees it; fields may be replaced before `call_next`."""

    spec: str
    plan: Plan
    messages: list[Mapping[str, Any]]
    kwargs: dict[str, Any] = field(default_factory=dict)
    """litellm keyword arguments (`temperature`, `max_tokens`, ...)."""
    user_id: str | None = None
    request_id: str | None = None
    stream: bool = False
    state: dict[str, Any] = field(default_factory=dict)
    """Scratch space shared by the chain's middleware for this request."""


CallNext = Callable[[Request], Awaitable[Any]]
Middleware = Callable[[Request, CallNext], Awaitable[Any]]


def middleware_name(middleware: object) -> str:
    name = getattr(middleware, "__qualname__", None) or type(middleware).__qualname__
    module = getattr(middleware, "__module__", None) or type(middleware).__module__
    return f"{module}.{name}" if module else name


async def run_chain(chain: Sequence[Middleware], request: Request, endpoint: CallNext) -> Any:
    """Run `request` through `chain` (first = outermost), then `endpoint`."""
    passing: set[int] = set()  # errors raised below a middleware, which it merely let through

    def link(index: int) -> CallNext:
        if index == len(chain):
            return endpoint
        middleware, inner = chain[index], link(index + 1)

        async def call_next_inner(req: Request) -> Any:
            try:
                return await inner(req)
            except BaseException as exc:
                passing.add(id(exc))
                raise

        async def call(req: Request) -> Any:
            try:
                return await middleware(req, call_next_inner)
            except BaseException as exc:
                if id(exc) in passing or not isinstance(exc, Exception):
                    raise
                if isinstance(exc, MiddlewareError):
                    raise
                passing.add(id(exc))
                raise MiddlewareError(middleware_name(middleware), exc) from exc

        return call

    return await link(0)(request)


def load_middleware(dotted: str) -> Middleware:
    """Import ``package.module:name`` (or ``package.module.name``); a class is instantiated."""
    module_name, sep, attr = dotted.partition(":")
    if not sep:
        module_name, _, attr = dotted.rpartition(".")
    if not module_name or not attr:
        raise UsageError(f"{dotted!r}: expected 'package.module:name'")
    try:
        value = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"{dotted!r} cannot be imported ({type(exc).__name__}: {exc})") from None
    if isinstance(value, type):
        value = value()
    if not callable(value):
        raise UsageError(f"{dotted!r} is not callable")
    return value


def load_configured(
    entries: Sequence[str], file: str | None = None
) -> tuple[tuple[Middleware, ...], list[ConfigIssue]]:
    """Import the ``middleware:`` entries of a models config: the chain, and one issue per entry
    that cannot be used. `Models()` and the validators share it, so both word a problem alike."""
    chain: list[Middleware] = []
    issues: list[ConfigIssue] = []
    for index, dotted in enumerate(entries):
        try:
            chain.append(load_middleware(dotted))
        except Exception as exc:
            issues.append(ConfigIssue(f"middleware.{index}", str(exc), file))
    return tuple(chain), issues
