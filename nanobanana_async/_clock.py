"""Monotonic time for the scheduler and limiters, injectable for tests."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """A monotonic clock the scheduler can sleep on."""

    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``now() >= deadline`` (at once when it already is)."""
        ...


class MonotonicClock:
    """``time.monotonic()``, the clock asyncio's event loop runs on."""

    def now(self) -> float:
        """Seconds on the event loop's monotonic scale."""
        # What BaseEventLoop.time() returns, without finding the running loop on every call
        # (a dozen calls per task); sleeps are relative, so another loop's clock (uvloop's
        # cached time) differs by at most a loop turn.
        return time.monotonic()

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until the loop's clock reaches ``deadline``."""
        delay = deadline - self.now()
        if delay > 0:
            await asyncio.sleep(delay)


DEFAULT_CLOCK = MonotonicClock()
