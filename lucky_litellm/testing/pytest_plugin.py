"""Pytest fixtures for the fake upstream.

Enable with `pytest_plugins = ["lucky_litellm.testing.pytest_plugin"]` in a conftest. The
fixture is a plain sync one on purpose: the server has its own thread and loop, so the same
fixture serves sync tests and async tests on any event loop.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .fake_upstream import FakeUpstream

__all__ = ["fake_upstream"]


@pytest.fixture
def fake_upstream() -> Iterator[FakeUpstream]:
    """A fresh, started FakeUpstream per test; stopped (connections closed) afterwards."""
    upstream = FakeUpstream()
    upstream.start()
    try:
        yield upstream
    finally:
        upstream.stop()
