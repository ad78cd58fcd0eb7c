"""Monotonic time for the scheduler and limiters, injectable for tests."""

from __future__ import annotations

import asyncio
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
    """The running event loop's clock (``loop.time()``)."""

    def now(self) -> float:
        """Seconds on the event loop's monotonic scale."""
        return asyncio.get_running_loop().time()

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until the loop's clock reaches ``deadline``."""
        delay = deadline - self.now()
        if delay > 0:
            await asyncio.sleep(delay)


DEFAULT_CLOCK = MonotonicClock()
