"""Cold start (issue 20, item 8): before a model's latency is learned, checks follow the
provider's documented advice, and only a few probe tasks check earlier."""

from __future__ import annotations

import asyncio
import random

import pytest

import nanobanana_async as nb
from nanobanana_async._limits import WAKE_GRID
from nanobanana_async._scheduler._plan import PROBES
from nanobanana_async.testing import FakeClock, HttpRequest, HttpResponse, ScriptedTransport
from tests.fakeapi import FakeApixo


async def run(durations: list[float]) -> dict[str, list[float]]:
    """Generate one task per duration at once on apixo (advice: first check after ~10 s, then
    every 3 s); the times each task was checked, by task id."""
    clock = FakeClock(0.0)
    server = FakeApixo(clock, latency=lambda i: durations[i])
    checked: dict[str, list[float]] = {}

    def recording(request: HttpRequest) -> HttpResponse | BaseException:
        if request.kind == "status":
            checked.setdefault(str(request.params["taskId"]), []).append(clock.now())
        return server(request)

    client = nb.Client("apixo", api_key="k", transport=ScriptedTransport(recording), clock=clock)
    async with client:
        jobs = [asyncio.ensure_future(client.generate(f"cat {i}")) for i in range(len(durations))]
        await clock.run_until(lambda: all(job.done() for job in jobs), step=0.05)
    assert all(job.result().urls for job in jobs)
    return checked


async def test_cold_start_one_task_is_checked_on_the_advice_and_a_few_probes() -> None:
    """One 17.5 s task, nothing learned yet: checked at 1/16, 1/8, 1/4 and 1/2 of the advice's
    10 s (it probes, in case the server is far faster than its docs), then on the advice's 3 s
    cadence: 8 checks, where it got 12 before."""
    checked = await run([17.5])
    assert checked["t0"] == [0.625, 1.25, 2.5, 5.0, 10.0, 13.0, 16.0, 19.0]


async def test_cold_start_twenty_tasks_average_few_checks() -> None:
    """Twenty tasks of ~17.5 s at once: only the first three probe, the others wait for the
    advice's first check after 10 s, and once the model is learned from a few completions
    its spread is not trusted yet, so the slow ones are not checked every second through
    their tail: at most 6 checks a task on average (9.7-10.5 before)."""
    rng = random.Random(1)
    durations = [17.5 * rng.lognormvariate(0.0, 0.25) for _ in range(20)]
    checked = await run(durations)
    probes = [times for times in checked.values() if times[0] < 10.0]
    assert len(probes) == PROBES <= 3
    advised = [checked[f"t{i}"] for i in range(PROBES, 20)]
    # A create paced past the burst goes on the wake grid, up to one step after its turn.
    advice = pytest.approx([10.0, 13.0, 16.0], abs=WAKE_GRID)
    assert all(times[:3] == advice for times in advised if len(times) >= 3)
    average = sum(len(times) for times in checked.values()) / 20
    assert average <= 6.0, average
