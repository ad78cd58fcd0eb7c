"""Seeded randomized runs of the scheduler under a fake clock: the invariants hold.

No window holds more than `limits.requests`, in-flight never exceeds the cap, every task's
future is resolved exactly once, and every task ends by its deadline.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import random
from typing import Any

import pytest

import nanobanana_async as nb
from nanobanana_async._scheduler._runner import Scheduler
from nanobanana_async.testing import FakeClock, ScriptedTransport, json_response
from tests.fakeapi import FakeApixo


def _max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max(
        (bisect.bisect_left(times, t + window - 1e-9) - i for i, t in enumerate(times)), default=0
    )


@pytest.mark.parametrize("seed", range(6))
async def test_invariants_hold_under_random_load(
    seed: int, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random latencies, random 429s and 5xx, stuck tasks: the limits and resolutions hold."""
    rng = random.Random(seed)
    limits = nb.Limits(
        requests=rng.choice([20, 40, 80]), per=10.0, concurrent_tasks=rng.choice([3, 8, 20])
    )
    server = FakeApixo(clock, latency=lambda i: rng.lognormvariate(2.5, 0.5))
    limited = json_response({"code": 429, "message": "x", "data": None}, 429, {"retry-after": "2"})
    broken = json_response({"code": 502, "message": "x", "data": None}, 502)

    def faults(request: nb.testing.HttpRequest) -> object:  # type: ignore[name-defined]
        roll = rng.random()
        if request.kind == "status" and roll < 0.03:
            return limited
        if request.kind == "status" and roll < 0.06:
            return broken
        return None

    server.hook = faults  # type: ignore[assignment]
    resolutions: dict[str, int] = {}
    original = Scheduler._resolve

    def counting(self: Scheduler, entry: Any, **kwargs: object) -> None:
        key = entry.ref.task_id
        resolutions[key] = resolutions.get(key, 0) + 1
        original(self, entry, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Scheduler, "_resolve", counting)
    client = nb.Client(
        "apixo",
        api_key="k",
        transport=ScriptedTransport(server),
        clock=clock,
        limits=limits,
        random=rng.random,
    )
    n = 60
    ended: dict[int, float] = {}
    started: dict[int, float] = {}
    peak = 0
    async with client:

        async def one(i: int) -> None:
            stuck = " [[stuck]]" if rng.random() < 0.05 else ""
            task = await client.submit(nb.ImageRequest(prompt=f"p{i}{stuck}", timeout=120))
            started[i] = clock.now()
            with contextlib.suppress(nb.NanoBananaError):
                await task
            ended[i] = clock.now()

        jobs = [asyncio.ensure_future(one(i)) for i in range(n)]

        def check() -> bool:
            nonlocal peak
            in_flight = client.statistics().in_flight
            peak = max(peak, in_flight)
            assert in_flight <= limits.concurrent_tasks
            return all(j.done() for j in jobs)

        await clock.run_until(check, step=0.05, limit=5000)
        for job in jobs:
            job.result()
    sends = [t for t, _ in server.log]
    assert _max_in_window(sends, limits.per) <= limits.requests
    assert len(resolutions) == n
    assert set(resolutions.values()) == {1}
    for i in range(n):
        assert ended[i] <= started[i] + 120 + 1e-6
    assert peak == limits.concurrent_tasks
