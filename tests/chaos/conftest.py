"""Shared pieces of the fault-matrix suite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import nanobanana_async as nb
from nanobanana_async._http import HttpRequest, HttpResponse
from nanobanana_async._transport import Transport


class CountingTransport:
    """Wraps a real transport and counts what it was asked to send."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.sent: list[str] = []

    async def send(self, request: HttpRequest, *, timeout: float) -> HttpResponse:
        self.sent.append(request.kind)
        return await self.inner.send(request, timeout=timeout)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """Every context the event loop's exception handler receives (pending-task warnings …)."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    yield seen
    loop.set_exception_handler(previous)


def fast_retry() -> nb.RetryPolicy:
    """Small real-time backoff for tests against the simulator."""
    return nb.RetryPolicy(base_delay=0.01, max_delay=0.05)
