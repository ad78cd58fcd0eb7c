"""The docs' polling advice is a floor (issue 11, item 5): xingchao asks for checks every 2-5 s,
so no task is checked sooner than 2 s after its create or its previous check (fake clock)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

import nanobanana_async as nb
from nanobanana_async.providers import DRIVERS
from nanobanana_async.testing import FakeClock, HttpRequest, HttpResponse, json_response
from tests.chaos.test_fault_matrix import scripted


@pytest.mark.parametrize(
    ("limits", "base"),
    [
        (None, 0.6),
        # Stated limits let idle requests pull checks forward (end-game spare checks); tasks
        # of 2.5-3.3 s in waves of 10 are still running at their first check, once the model
        # has learned, so a spare check would come well within 2 s of it.
        (nb.Limits(requests=6_000, per=60.0, concurrent_tasks=10), 2.5),
    ],
    ids=["default-limits", "stated-limits-spare-checks"],
)
async def test_xingchao_never_checks_a_task_sooner_than_2s(
    clock: FakeClock, limits: nb.Limits | None, base: float
) -> None:
    """Tasks of ~1 s teach the planner to check within a fraction of a second; the 2 s floor
    still holds from create to first check and between checks of one task, and for the
    spare checks of an account whose limits the caller stated."""
    created: dict[str, float] = {}
    finish: dict[str, float] = {}
    events: dict[str, list[float]] = {}

    def server(request: HttpRequest) -> HttpResponse:
        now = clock.now()
        if request.kind == "submit":
            task_id = f"t{len(created)}"
            created[task_id] = now
            # base + 0-0.8 s: with base 0.6, a learned plan wants sub-second checks.
            finish[task_id] = now + base + 0.1 * (len(created) % 9)
            events[task_id] = [now]
            return json_response(
                {
                    "id": task_id,
                    "object": "nanobanana",
                    "created": 0,
                    "model": "m",
                    "status": "queued",
                }
            )
        task_id = request.path.rsplit("/", 1)[-1]
        events[task_id].append(now)
        done = now >= finish[task_id]
        return json_response(
            {
                "id": task_id,
                "object": "image.generation",
                "created": 0,
                "model": "m",
                "status": "completed" if done else "processing",
                "image_url": f"https://i/{task_id}.png" if done else None,
                "error": None,
            }
        )

    extra = {} if limits is None else {"limits": limits}
    client, _ = scripted(clock, server, provider="xingchao", **extra)
    async with client:
        jobs = [asyncio.ensure_future(client.generate(f"cat {i}")) for i in range(40)]
        await clock.run_until(lambda: all(j.done() for j in jobs))
    assert all(j.exception() is None for j in jobs)
    gaps = [b - a for times in events.values() for a, b in itertools.pairwise(times)]
    assert len(gaps) >= 40
    assert min(gaps) >= 2.0 - 1e-9


def test_other_providers_have_no_floor() -> None:
    """Only a documented floor applies: crun, apixo and nanobananaapi document none."""
    floors = {name: driver.min_check_gap for name, driver in DRIVERS.items()}
    assert floors == {"xingchao": 2.0, "crun": 0.0, "nanobananaapi": 0.0, "apixo": 0.0}
