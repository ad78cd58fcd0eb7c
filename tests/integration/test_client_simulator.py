"""The client end to end against each provider's simulator, at scaled-down limits.

The limits are scaled down so that a run of about four seconds presses both of them: it lasts
longer than the rate window and keeps the concurrent-task cap full. The client's 2% margin is
40 ms of arrival jitter at a 2 s window: more than a loopback request takes, even on a loaded
machine (a shorter window would make a scheduling stall look like a breach).
"""

from __future__ import annotations

import asyncio
import statistics
import sys

import pytest

import nanobanana_async as nb
from nanobanana_async.testing import FakeClock, Latency, ScriptedTransport, ServerLimits, Simulator
from tests.fakeapi import LimitedApixo

LIMITS = nb.Limits(requests=120, per=2.0, concurrent_tasks=14)
SERVER_LIMITS = ServerLimits(requests=120, per=2.0, concurrent_tasks=14)
LATENCY = Latency(median=0.3, sigma=0.3)


@pytest.mark.parametrize("provider", ["xingchao", "crun", "nanobananaapi", "apixo"])
async def test_tasks_within_limits(provider: str) -> None:
    """90 tasks all succeed; both limits are pressed, and the server sees no 429 and no window
    or cap over the limit."""
    # xingchao's 2 s floor between checks makes each task last >= 2 s: fewer tasks, same claims
    # (two full rounds of the cap of 14; a 30th task cost a third round of 2 s).
    n = 2 * LIMITS.concurrent_tasks if provider == "xingchao" else 90
    simulator = Simulator(provider, latency=LATENCY, limits=SERVER_LIMITS, seed=7)
    async with (
        simulator as sim,
        nb.Client(
            # Evaluated after the simulator has started, so its base URL is known.
            provider,
            api_key=simulator.api_key,
            base_url=simulator.base_url,
            limits=LIMITS,
        ) as client,
    ):
        loop = asyncio.get_running_loop()
        start = loop.time()
        results = await asyncio.gather(
            *(client.generate(f"prompt {i}", timeout=120) for i in range(n))
        )
        wall = loop.time() - start
        stats = client.statistics()
    assert len({r.task_id for r in results}) == n
    assert all(r.urls for r in results)
    assert sim.stats.creates == n
    assert sim.stats.duplicate_creates == 0
    assert sim.stats.rate_limited == 0
    assert sim.stats.max_window <= LIMITS.requests
    assert sim.stats.max_concurrent <= LIMITS.concurrent_tasks
    # The run really pressed both limits, or the two checks above would prove nothing. Not on
    # xingchao: its documented 2 s floor between checks of a task (0.3 s tasks here) keeps the
    # request rate far below the window. In real time a loaded machine slows the client (about
    # 112 of 120 quiet, under 96 seen under load): half the window here, and the 80 % it
    # reaches when nothing slows it in test_tasks_press_both_limits_without_passing_them.
    if provider != "xingchao":
        assert sim.stats.max_window >= LIMITS.requests * 0.5
    assert stats.peak_in_flight == LIMITS.concurrent_tasks
    assert stats.in_flight == 0
    assert stats.pending == 0
    checks = sim.stats.checks_per_task()
    mean_latency = LATENCY.median * 2.718281828 ** (LATENCY.sigma**2 / 2)
    bound = min(LIMITS.concurrent_tasks / mean_latency, LIMITS.requests / LIMITS.per / 2)
    ratio = n / wall / bound
    lag = statistics.median(sim.stats.lags)
    sys.stdout.write(
        f"\n[{provider}] {n} tasks in {wall:.1f} s; checks/task {checks:.2f}; "
        f"throughput/bound {ratio:.2f}; max window {sim.stats.max_window}/{LIMITS.requests}; "
        f"max concurrent {sim.stats.max_concurrent}/{LIMITS.concurrent_tasks}; "
        f"lag p50 {lag:.2f} s\n"
    )


async def test_tasks_press_both_limits_without_passing_them(clock: FakeClock) -> None:
    """The claim above on a fake clock, where load cannot slow the client: 90 short tasks keep
    the account's window at least 80 % full (and never over it) and its cap full, with no
    429."""
    server = LimitedApixo(
        clock, requests=120, per=2.0, cap=14, latency=lambda i: 0.2 + 0.05 * (i % 5)
    )
    async with nb.Client(
        "apixo",
        api_key="k",
        transport=ScriptedTransport(server),
        clock=clock,
        random=lambda: 0.5,
        limits=LIMITS,
    ) as client:
        jobs = [asyncio.ensure_future(client.generate(f"prompt {i}")) for i in range(90)]
        await clock.run_until(lambda: all(j.done() for j in jobs), limit=600)
        stats = client.statistics()
    assert all(j.result().urls for j in jobs)
    assert server.rate_limited == 0
    assert LIMITS.requests * 0.8 <= server.max_window <= LIMITS.requests, server.max_window
    assert server.max_running <= LIMITS.concurrent_tasks
    assert stats.peak_in_flight == LIMITS.concurrent_tasks
