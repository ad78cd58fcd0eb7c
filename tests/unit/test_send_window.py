"""No window of the client's own sends holds more than the pace allows (issue 22), even when
the event loop stalls between a request's turn and its send."""

from __future__ import annotations

import asyncio
import bisect
import math

import pytest

import nanobanana_async as nb
from nanobanana_async._scheduler import _runner
from nanobanana_async._scheduler._ledger import Ledger
from nanobanana_async.testing import FakeClock, ScriptedTransport
from tests.fakeapi import FakeApixo


class StallingClock(FakeClock):
    """A fake clock whose time can pass while nothing runs: a busy or starved event loop."""

    def stall(self, seconds: float) -> None:
        self._now += seconds  # every sleeper due meanwhile wakes late, all at once


def most_in_window(times: list[float], per: float) -> int:
    """The most times in any half-open window ``(t - per, t]`` (as the simulator counts)."""
    times = sorted(times)
    return max(
        (i + 1 - bisect.bisect_right(times, t - per) for i, t in enumerate(times)), default=0
    )


async def test_a_stalled_loop_never_bunches_sends_over_the_pace_bound() -> None:
    """Turns booked during a stall of the loop are all due when it ends: sent then, on top of
    the paced ones that follow, a window of sends held the turns of a window plus the stall
    (scenario 1b reached 1,001 of 1,000). The send itself waits for room in the send log, so
    no window of sends holds more than the budget, stalls or not, and every task still ends."""
    clock = StallingClock()
    server = FakeApixo(clock, latency=lambda i: 5.0)
    # Rate-bound: the creates alone book every turn of the window ahead.
    limits = nb.Limits(requests=100, per=1.0, concurrent_tasks=1000)
    budget = math.floor(limits.requests * (1 - limits.safety_margin))
    client = nb.Client(
        "apixo", api_key="k", transport=ScriptedTransport(server), clock=clock, limits=limits
    )
    async with client:
        jobs = [asyncio.ensure_future(client.generate(f"cat {i}")) for i in range(400)]
        steps = 0
        while not all(job.done() for job in jobs):
            assert steps < 20_000
            steps += 1
            if steps % 150 == 0:
                clock.stall(0.25)  # a quarter second in which nothing ran
            await clock.advance(0.01)
    assert all(job.result() for job in jobs)
    sends = [at for at, _ in server.log]
    assert most_in_window(sends, limits.per) <= budget


async def test_a_check_whose_turn_was_taken_before_the_log_filled_waits_at_its_send(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A check's turn is taken in the runner's turn and sent when its sender (the caller
    awaiting the task, or a check task) next runs: under a lagging loop, requests due
    meanwhile (creates woken on their booked turns) can fill the window first. The check then
    waits at its send until the oldest request leaves the window, instead of going as the
    budget's one too many."""
    clock = FakeClock()
    server = FakeApixo(clock, latency=lambda i: 30.0)
    limits = nb.Limits(requests=100, per=1.0, concurrent_tasks=10)
    budget = math.floor(limits.requests * (1 - limits.safety_margin))
    client = nb.Client(
        "apixo", api_key="k", transport=ScriptedTransport(server), clock=clock, limits=limits
    )
    others: list[float] = []
    turn = _runner.Scheduler._turn

    def lagging_turn(self: _runner.Scheduler, now: float) -> tuple[float, bool]:
        started = self._started
        out = turn(self, now)
        if self._started > started and not others:
            # Between this turn and the check's first step, the rest of the window is sent.
            ledger = next(iter(self._accounts.values())).ledger
            for _ in range(budget - ledger.requests_in_window()):
                others.append(clock.now())
                ledger.note_send()
        return out

    monkeypatch.setattr(_runner.Scheduler, "_turn", lagging_turn)
    async with client:
        job = asyncio.ensure_future(client.generate("cat"))
        await clock.run_until(lambda: server.count("status") > 0, step=0.05, limit=60.0)
        job.cancel()
    created, checked = (at for at, _ in server.log[:2])
    assert others, "the check's turn was never taken"
    assert checked >= created + limits.per  # held until the create left the window
    assert most_in_window([at for at, _ in server.log] + others, limits.per) <= budget


async def test_take_send_counts_a_send_only_while_the_log_has_room() -> None:
    """take_send (a check's room look and count in one call) counts a send exactly while
    has_send_room says there is room, counts nothing when there is none, and has room again
    once the oldest send left the window: the same bound as has_send_room then note_send."""
    clock = FakeClock()
    limits = nb.Limits(requests=10, per=1.0, concurrent_tasks=10)
    budget = math.floor(limits.requests * (1 - limits.safety_margin))
    ledger = Ledger(limits, clock)
    taken = 0
    while ledger.has_send_room():
        assert ledger.take_send()
        taken += 1
        assert taken <= budget
    assert taken == budget
    assert not ledger.take_send()  # full: nothing counted
    assert ledger.requests == budget
    assert ledger.requests_in_window() == budget
    await clock.advance(limits.per)  # the oldest sends leave the window
    assert ledger.has_send_room()
    assert ledger.take_send()
    assert ledger.requests == budget + 1
