"""Typed events against the loopback simulator and a real callback receiver: the events a run
emits add up to what the server counted (requests, 429s, faults, tasks)."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path

import aiohttp
import pytest

import nanobanana_async as nb
from nanobanana_async import events as ev
from nanobanana_async._clock import DEFAULT_CLOCK
from nanobanana_async._scheduler import _redis
from nanobanana_async._scheduler._slots import Lease
from nanobanana_async.testing import (
    FakeClock,
    Faults,
    Latency,
    ScriptedTransport,
    ServerLimits,
    Simulator,
)
from tests.fakeapi import FakeApixo
from tests.redis_server import RedisServer


async def test_f02_f36_events_add_up_to_the_simulators_counts_under_faults(
    tmp_path: Path, canary: str
) -> None:
    """Eight prompts on an account that runs 3 tasks (the client was told 8) and fails a fifth
    of status checks: one ``submitted`` per create the server saw, one ``checked`` or status
    ``retrying`` per status check, one ``rate_limited`` (scope tasks) per 429, one ``accepted``
    and ``resolved`` per task, each ``waiting`` followed by its ``slot_granted``, and the
    download is ``downloaded``; no event holds the key."""
    async with Simulator(
        "apixo",
        api_key=canary,
        latency=Latency(median=0.3, sigma=0.2),
        limits=ServerLimits(requests=1000, per=10.0, concurrent_tasks=3),
        faults=Faults(server_error=0.2, kinds=("status",)),
        seed=3,
    ) as sim:
        seen: list[ev.Event] = []
        limits = nb.Limits(requests=1000, per=10, concurrent_tasks=8)
        async with nb.Client(
            "apixo", api_key=sim.api_key, base_url=sim.base_url, limits=limits, on_event=seen.append
        ) as client:
            results = await asyncio.gather(*(client.generate(f"p{i}") for i in range(8)))
            paths = await client.download(results[0], tmp_path / "first")
    count = collections.Counter(e.kind for e in seen)
    stats = sim.stats
    retries = collections.Counter(e.operation for e in seen if isinstance(e, ev.Retrying))
    assert count["submitted"] == stats.requests["create"]
    assert count["checked"] + retries["status"] == stats.requests["status"]
    assert retries["status"] == stats.faults["server_error"] > 0
    assert count["rate_limited"] == stats.rate_limited > 0
    assert {e.scope for e in seen if isinstance(e, ev.RateLimited)} == {"tasks"}
    assert count["accepted"] == count["resolved"] == stats.creates == 8
    assert count["waiting"] == count["slot_granted"]
    assert count["limits_lowered"] == 1
    (downloaded,) = (e for e in seen if isinstance(e, ev.Downloaded))
    assert downloaded.path == str(paths[0])
    assert downloaded.size == paths[0].stat().st_size
    assert downloaded.task_id == results[0].task_id
    assert not any(canary in repr(e) for e in seen)


async def test_event_callback_received(clock: FakeClock) -> None:
    """A verified callback is a ``callback`` event (the state it claims) before the check that
    confirms it; the task's ``resolved`` counts it."""
    server = FakeApixo(clock, latency=lambda i: 12.0)
    seen: list[ev.Event] = []
    async with (
        nb.CallbackReceiver() as receiver,
        nb.Client(
            "apixo",
            api_key="k",
            transport=ScriptedTransport(server),
            clock=clock,
            callbacks=receiver,
            on_event=seen.append,
        ) as client,
        aiohttp.ClientSession() as http,
    ):
        task = await client.submit(nb.ImageRequest(prompt="a cat"))
        updates: list[ev.Event] = []
        task.on_update(updates.append)
        await clock.advance(12.5)
        body = {"code": 200, "data": {"taskId": task.id, "state": "success"}}
        async with http.post(server.callback_urls[0], json=body) as resp:
            assert resp.status == 200
        await clock.run_until(task.done)
    (callback,) = (e for e in seen if isinstance(e, ev.CallbackReceived))
    assert (callback.task_id, callback.state) == (task.id, nb.TaskState.SUCCEEDED)
    assert [e.kind for e in updates][-3:] == ["callback", "checked", "resolved"]
    resolved = updates[-1]
    assert isinstance(resolved, ev.Resolved)
    assert resolved.callbacks == 1
    assert resolved.checks == server.tasks[str(task.id)].checks


class Owner:
    """A lease's owner in another process (a client, in the library)."""


async def test_a_create_waiting_for_a_slot_through_redis_is_told(
    redis_server: RedisServer, canary: str
) -> None:
    """Through a coordinator, a create that waits because another process holds the account's
    slots emits ``waiting`` (the cap taken) and, once a slot is freed there, ``slot_granted``
    with the time it waited; a create admitted at once emits neither."""
    limits = nb.Limits(requests=1000, per=10.0, concurrent_tasks=2)
    sim = Simulator("apixo", api_key=canary, latency=Latency(median=0.05, sigma=0.1))
    sim.start_in_thread()
    holder = _redis.RedisLedger(
        limits,
        DEFAULT_CLOCK,
        redis=_redis.connect(redis_server.url),
        prefix=_redis.account_prefix("apixo", sim.base_url, sim.api_key),
        max_wait=5.0,
    )
    seen: list[ev.Event] = []
    try:
        async with nb.Client(
            "apixo",
            api_key=sim.api_key,
            base_url=sim.base_url,
            coordinator=redis_server.url,
            limits=limits,
            on_event=seen.append,
        ) as client:
            await client.generate("alone")
            assert not [e for e in seen if e.kind in ("waiting", "slot_granted")]
            # Another process takes both slots of the account.
            held = [Lease(Owner()), Lease(Owner())]
            for lease in held:
                await holder.slots.admit(lease)
            waiter = asyncio.ensure_future(client.generate("waits"))
            await asyncio.sleep(0.4)
            assert not waiter.done()
            (waiting,) = (e for e in seen if isinstance(e, ev.WaitingForSlot))
            assert (waiting.running, waiting.cap) == (2, 2)
            assert not [e for e in seen if isinstance(e, ev.SlotGranted)]
            freed = DEFAULT_CLOCK.now()
            await holder.slots.refuse(held[0])  # one slot freed in Redis
            await asyncio.wait_for(waiter, 5)
    finally:
        await holder.aclose()
        sim.stop_thread()
    (granted,) = (e for e in seen if isinstance(e, ev.SlotGranted))
    # Granted only once the slot was freed, and ``waited`` is the time from ``waiting`` to
    # the grant (the create began waiting after its first ask, some time into the 0.4 s).
    assert waiting.at < freed <= granted.at
    assert granted.waited == pytest.approx(granted.at - waiting.at, abs=1e-6)
