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
from nanobanana_async.testing import FakeClock, HttpRequest, HttpResponse, ScriptedTransport
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


async def test_f45_a_cap_429_while_our_count_shows_room_waits_for_a_task_to_end(
    clock: FakeClock,
) -> None:
    """F45: told 600 / 10 s and 50 tasks, 10 prompts of 3 s on an account of 5 tasks, its
    window known (590 / 10 s, learned by an earlier run). Once the cap is learned (5), another
    process runs 2 tasks there for 6 s: creates our count has room for are refused. A refused
    one keeps its slot until one of our tasks ends (or its backoff passes), so it and the
    others wait instead of being sent into the full account: 2 refusals, every caller gets
    its image. Before, each refusal handed its slot to the next create at once: 6 refusals in
    90 ms and two callers failed, their attempts spent inside one cap episode."""
    server = LimitedApixo(clock, requests=600, per=10.0, cap=5, latency=lambda i: 3.0)
    other: list[float] = []  # when the other process started its 2 tasks
    refusals: list[tuple[str, float]] = []  # (prompt, when) of each create refused for them

    def other_process(request: HttpRequest) -> HttpResponse | None:
        now = clock.now()
        if request.kind == "status" and server.rate_limited and not other:
            other.append(now)  # the cap was learned: the other process starts now
        busy = bool(other) and now < other[0] + 6.0
        if request.kind == "submit" and busy and server.running() + 2 >= server.cap:
            body = request.json
            assert isinstance(body, dict)
            refusals.append((str(body["input"]["prompt"]), now))
            return server._too_many(now)
        return None

    server.hook = other_process
    limits = nb.Limits(requests=600, per=10, concurrent_tasks=50)
    async with nb.Client(
        "apixo",
        api_key="k",
        transport=ScriptedTransport(server),
        clock=clock,
        random=lambda: 0.5,
        limits=limits,
    ) as client:
        jobs = [asyncio.ensure_future(client.generate(f"cat {i}")) for i in range(10)]
        await clock.advance(0.0)
        submitter = client._life.submitter
        assert submitter is not None
        learned = nb.Limits(requests=590, per=10, concurrent_tasks=50)
        submitter.conn.account.ledger.adopt_learned(learned, age=0.0)
        await clock.run_until(lambda: all(j.done() for j in jobs), step=0.05)
    assert [type(j.result()).__name__ for j in jobs] == ["ImageResult"] * 10
    assert len(server.tasks) == 10  # nothing paid twice
    assert [prompt for prompt, _ in refusals] == ["cat 8", "cat 9"]
    assert server.rate_limited == 3  # with the one that taught the cap


async def test_f45_a_create_held_after_a_refusal_asks_again_when_a_task_ends(
    ledger: Ledger, clock: FakeClock
) -> None:
    """F45: a create refused at the cap while our count shows room waits, still admitted, for
    one of our tasks to end (its lease released), or for its backoff at the latest."""
    running = burst(ledger, 3)
    held = asyncio.ensure_future(ledger.slots.freed(clock.now() + 5.0))
    await clock.advance(1.0)
    assert not held.done()  # nothing ended: it does not ask again
    ledger.slots.release(running[0])  # a task seen ending
    await clock.advance(0.0)
    assert held.done()
    assert held.result() is True
    timed_out = asyncio.ensure_future(ledger.slots.freed(clock.now() + 5.0))
    await clock.advance(5.0)
    assert timed_out.done()
    assert timed_out.result() is False  # the backoff passed: it asks again


async def test_f45_a_slot_freed_goes_to_a_waiting_create_before_a_held_one(
    clock: FakeClock,
) -> None:
    """F45: a task's end frees one slot at the provider: a create waiting for admission takes
    it, and the create held after a refusal keeps waiting (both sent, one would be refused)."""
    ledger = Ledger(nb.Limits(concurrent_tasks=3), clock)
    running = burst(ledger, 3)  # the cap is reached
    held = asyncio.ensure_future(ledger.slots.freed(clock.now() + 5.0))
    waiting = Lease(object())
    admitted = asyncio.ensure_future(ledger.slots.admit(waiting))
    await clock.advance(0.0)
    ledger.slots.release(running[0])
    await clock.advance(0.0)
    assert admitted.done()
    assert not held.done()
    ledger.slots.release(running[1])  # nobody waits for this one: the held create asks again
    await clock.advance(0.0)
    assert held.done()
    assert held.result() is True
