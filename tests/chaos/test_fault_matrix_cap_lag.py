"""Fault matrix row F36 under a lagging loop (issue 19): what a create's acceptance or 429 at
the task cap teaches, in memory and through Redis (fake clock, scripted account)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

import nanobanana_async as nb
from nanobanana_async._scheduler import _redis
from nanobanana_async._scheduler._ledger import Lease, Ledger
from nanobanana_async.testing import FakeClock, ScriptedTransport
from tests.chaos.test_fault_matrix_adaptive import Delayed
from tests.fakeapi import LimitedApixo
from tests.redis_server import RedisServer


@pytest.fixture(params=["memory", "redis"])
async def ledger(
    request: pytest.FixtureRequest, clock: FakeClock, tmp_path: object
) -> AsyncIterator[Ledger]:
    """A ledger told the default limits, in memory or shared through a real redis-server."""
    if request.param == "memory":
        yield Ledger(nb.Limits(), clock)
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    shared = _redis.RedisLedger(
        nb.Limits(),
        clock,
        redis=_redis.connect(server.url),
        prefix="nanobanana:caplag",
        max_wait=5.0,
    )
    try:
        yield shared
    finally:
        await shared.aclose()


def burst(ledger: Ledger, creates: int) -> list[Lease]:
    """``creates`` creates admitted and sent one after another (cap not known yet)."""
    owner = object()
    leases = []
    for _ in range(creates):
        lease = ledger.slots.take(owner)
        ledger.note_send()
        leases.append(lease)
    return leases


async def test_f36_creates_sent_after_the_refused_one_never_raise_the_cap(
    ledger: Ledger,
) -> None:
    """F36: a burst of 60 creates on an account of 50 tasks; the 51st is refused (the cap: 50).
    The 9 sent after it are accepted too, because tasks the client has not seen end freed
    their slots at the provider meanwhile: they show no more tasks running at once, and the
    learned cap stays 50 (it was raised to 59: under a lagging loop, 64-152 for 50)."""
    leases = burst(ledger, 60)
    for lease in leases[:50]:
        ledger.note_accepted(lease)
    refused = leases[50]
    assert ledger.rate_limited(retry_after=None, creating=True, lease=refused)
    ledger.slots.release(refused)
    assert ledger.effective.concurrent_tasks == 50
    for lease in leases[51:]:
        ledger.note_accepted(lease)
    assert ledger.effective.concurrent_tasks == 50


async def test_f36_a_create_sent_before_the_refused_one_raises_the_cap_by_one(
    ledger: Ledger,
) -> None:
    """F36: the provider took a create sent before the one it refused (its answer came back
    later): that task ran when the cap refused, so the cap learned from the 429 goes up by
    one for it, and by nothing for those sent after the refused one."""
    leases = burst(ledger, 60)
    for lease in leases[:49]:
        ledger.note_accepted(lease)
    refused = leases[50]
    assert ledger.rate_limited(retry_after=None, creating=True, lease=refused)
    ledger.slots.release(refused)
    assert ledger.effective.concurrent_tasks == 49
    ledger.note_accepted(leases[49])  # sent before the refused one, answered after it
    assert ledger.effective.concurrent_tasks == 50
    for lease in leases[51:]:
        ledger.note_accepted(lease)
    assert ledger.effective.concurrent_tasks == 50


async def test_f36_a_lagging_loop_learns_the_cap_the_account_has() -> None:
    """F36 (issue 19): told the defaults, 300 prompts on 600 / 10 s and 50 tasks, tasks of
    ~0.5 s, answers 0.3 s after each send (a loop lagging behind its network): the creates
    still in flight when the cap refused are taken as tasks end unseen, and the learned cap
    stays the account's 50 (71 before), never above it during the run."""
    clock = FakeClock(1000.0)
    rng = random.Random(7)
    durations = [rng.lognormvariate(0.0, 0.3) * 0.5 for _ in range(300)]
    server = LimitedApixo(clock, requests=600, per=10.0, cap=50, latency=lambda i: durations[i])
    network = Delayed(clock, server, rtt=0.3)
    caps: list[int] = []
    async with nb.Client(
        "apixo", api_key="k", transport=ScriptedTransport(network), clock=clock, random=lambda: 0.5
    ) as client:
        jobs = [asyncio.ensure_future(client.generate(f"cat {i}")) for i in range(300)]

        def finished() -> bool:
            caps.append(client.statistics().effective_limits.concurrent_tasks)
            return all(j.done() for j in jobs)

        await clock.run_until(finished, step=0.05)
    assert all(isinstance(j.result(), nb.ImageResult) for j in jobs)
    assert len(server.tasks) == 300  # nothing paid twice
    learned = [cap for cap in caps if cap < nb.Limits().concurrent_tasks]
    assert learned
    assert max(learned) == 50
    assert server.max_running <= 50
