"""Clocks and the timers the runner is driven by: never early on any loop, never armed under a
millisecond, and a fake clock's timers woken in order with its sleepers (issue 22, item 3).

The real-clock tests run on whichever loop the suite runs on: asyncio's, or uvloop's in the
CI's uvloop leg (``NANOBANANA_TEST_LOOP=uvloop``), whose timers are whole milliseconds.
"""

from __future__ import annotations

import asyncio
import functools

from nanobanana_async._clock import MIN_AHEAD, MonotonicClock, timers
from nanobanana_async.testing import FakeClock, settle


async def test_a_sleep_under_a_millisecond_never_returns_before_its_deadline() -> None:
    """A pacing sleep a fraction of a millisecond long ends on or after its deadline by the
    clock (uvloop's own sleep returns at once under 0.5 ms and up to ~1 ms early above it, so
    a create could go before its booked turn)."""
    clock = MonotonicClock()
    early = []
    for i in range(40):
        deadline = clock.now() + 0.0001 * (i % 12)
        await clock.sleep_until(deadline)
        if clock.now() < deadline:
            early.append(deadline - clock.now())
    assert early == []


def _stamp(done: asyncio.Future[float], loop: asyncio.AbstractEventLoop) -> None:
    done.set_result(loop.time())


async def test_a_timer_is_never_armed_less_than_a_millisecond_ahead() -> None:
    """A timer asked for a fraction of a millisecond from now is armed a millisecond ahead on
    the loop's own time: shorter ones fire at once on uvloop, and the runner would spin. (On
    the real clock it may still fire early, uvloop's time being cached per iteration: the
    runner checks the clock when it wakes.)"""
    clock = MonotonicClock()
    loop = asyncio.get_running_loop()
    waited: list[float] = []
    for _ in range(10):
        armed = loop.time()
        done: asyncio.Future[float] = loop.create_future()
        clock.call_at(clock.now() + 0.0002, functools.partial(_stamp, done, loop))
        waited.append(await done - armed)
    assert min(waited) >= MIN_AHEAD * 0.999


async def test_fake_timers_and_sleepers_wake_in_one_deadline_order() -> None:
    """A FakeClock runs its timers (what the runner is driven by) and wakes its sleepers in
    one deadline order as it advances; a cancelled timer never runs, and one armed for now
    or earlier runs on the loop's next iteration."""
    clock = FakeClock(10.0)
    order: list[str] = []

    async def sleeper(name: str, deadline: float) -> None:
        await clock.sleep_until(deadline)
        order.append(f"{name}@{clock.now()}")

    sleepers = [asyncio.ensure_future(sleeper("s", 12.0))]
    clock.call_at(11.0, lambda: order.append(f"t@{clock.now()}"))
    clock.call_at(13.0, lambda: order.append("cancelled")).cancel()
    clock.call_at(14.0, lambda: order.append(f"t@{clock.now()}"))
    clock.call_at(9.0, lambda: order.append(f"now@{clock.now()}"))
    await asyncio.sleep(0)
    assert order == ["now@10.0"]
    await clock.advance(5.0)
    assert order == ["now@10.0", "t@11.0", "s@12.0", "t@14.0"]
    await asyncio.gather(*sleepers)


async def test_a_clock_without_timers_drives_the_runner_by_sleeping() -> None:
    """A caller's clock that can only sleep still gets timers: a task sleeps on it, and a
    cancelled one never calls back."""

    class SleepOnly:
        def __init__(self) -> None:
            self.inner = FakeClock(0.0)

        def now(self) -> float:
            return self.inner.now()

        async def sleep_until(self, deadline: float) -> None:
            await self.inner.sleep_until(deadline)

    clock = SleepOnly()
    calls: list[float] = []
    arm = timers(clock)
    arm(5.0, lambda: calls.append(clock.now()))
    arm(3.0, lambda: calls.append(-1.0)).cancel()
    await clock.inner.advance(10.0)
    assert calls == [5.0]


async def test_settle_lets_a_chain_of_ready_work_finish_before_it_returns() -> None:
    """``settle()`` (what FakeClock.advance waits with) returns only once work woken step by
    step has run: a 20-hop chain of tasks, each woken by the one before, plus a loop timer
    due now. It may stop early when the loop is quiet, never while something is ready."""
    loop = asyncio.get_running_loop()
    events = [asyncio.Event() for _ in range(21)]
    finished: list[int] = []

    async def hop(i: int) -> None:
        await events[i].wait()
        finished.append(i)
        events[i + 1].set()

    hops = [asyncio.ensure_future(hop(i)) for i in range(20)]
    timer_ran: list[bool] = []
    loop.call_later(0, timer_ran.append, True)
    await asyncio.sleep(0)  # every hop now waits on its event
    events[0].set()
    await settle()
    assert finished == list(range(20))
    assert events[20].is_set()
    assert timer_ran == [True]
    await asyncio.gather(*hops)
