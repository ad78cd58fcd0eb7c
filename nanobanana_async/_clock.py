"""Monotonic time for the scheduler and limiters, and the one timer the scheduler's runner is
driven by, injectable for tests (touches the event loop only)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final, Protocol, runtime_checkable

MIN_AHEAD: Final = 0.001
"""Seconds a timer or sleep is at least armed ahead. uvloop's timers count whole milliseconds
(its ``call_later`` rounds: under 0.5 ms fires at once, on the next iteration) and run on a time
cached at the start of the loop's iteration, so a shorter timer spins the loop and a short sleep
returns early; on every loop a wake-up is therefore checked against the clock, not trusted."""


class Clock(Protocol):
    """A monotonic clock the scheduler can sleep on."""

    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``now() >= deadline`` (at once when it already is)."""
        ...


class Timer(Protocol):
    """A pending call armed by :func:`call_at`."""

    def cancel(self) -> None:
        """Never make the call (nothing when it was made already)."""
        ...


@runtime_checkable
class TimerClock(Clock, Protocol):
    """A clock that also arms timers (``MonotonicClock``, ``testing.FakeClock``)."""

    def call_at(self, deadline: float, callback: Callable[[], object]) -> Timer:
        """Call ``callback`` on the running loop once the clock reaches about ``deadline``
        (never before the next iteration of the loop); the callback checks the clock itself."""
        ...


class MonotonicClock:
    """``time.monotonic()``, the clock asyncio's event loop runs on."""

    # What BaseEventLoop.time() returns, without finding the running loop on every call
    # (about ten reads per task); sleeps are relative, so another loop's clock (uvloop's
    # cached time) differs by at most a loop turn. The builtin itself, not a method wrapping
    # it: each read is one C call instead of a Python call and a C call.
    now = staticmethod(time.monotonic)
    """Seconds on the event loop's monotonic scale."""

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until the clock reaches ``deadline``, checked against the clock after every
        wake-up: a loop's timer may fire early (uvloop: up to a millisecond)."""
        delay = deadline - self.now()
        while delay > 0:
            await asyncio.sleep(max(delay, MIN_AHEAD))
            delay = deadline - self.now()

    def call_at(self, deadline: float, callback: Callable[[], object]) -> Timer:
        """The running loop's own timer, armed at least ``MIN_AHEAD`` from now."""
        delay = max(deadline - self.now(), MIN_AHEAD)
        return asyncio.get_running_loop().call_later(delay, callback)


def timers(clock: Clock) -> Callable[[float, Callable[[], object]], Timer]:
    """How to arm a timer on ``clock``: its own ``call_at`` when it has one, else a task
    sleeping on it (a clock brought by the caller that only sleeps)."""
    if isinstance(clock, TimerClock):
        return clock.call_at
    return lambda deadline, callback: _SleepingTimer(clock, deadline, callback)


class _SleepingTimer:
    __slots__ = ("_task",)

    def __init__(self, clock: Clock, deadline: float, callback: Callable[[], object]) -> None:
        async def wait() -> None:
            await clock.sleep_until(deadline)
            callback()

        self._task = asyncio.get_running_loop().create_task(wait())

    def cancel(self) -> None:
        self._task.cancel()


DEFAULT_CLOCK = MonotonicClock()
