"""The per-task submit path (issue 22, "In process"): a generate() that finds a slot free is
started without a coroutine of the submitter's, one that waits for a slot goes the long way,
and both end the same; what the path no longer does per task (a random lease id) stays
undone."""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import cast

import pytest

import nanobanana_async as nb
from nanobanana_async._scheduler._account import Account, Connection
from nanobanana_async._scheduler._slots import Lease
from nanobanana_async._transport import Transport
from nanobanana_async.providers import DRIVERS
from nanobanana_async.testing import FakeClock, ScriptedTransport
from tests.fakeapi import FakeApixo


def _client(clock: FakeClock, server: FakeApixo, **kw: object) -> nb.Client:
    return nb.Client(
        "apixo",
        api_key="k",
        transport=ScriptedTransport(server),
        clock=clock,
        random=lambda: 0.5,
        **kw,  # type: ignore[arg-type]  # limits= only
    )


async def test_a_generate_waiting_for_a_slot_is_served_when_one_frees(clock: FakeClock) -> None:
    """With every slot taken, a second generate() waits (nothing sent for it), is sent once
    the first task ends, and returns its own result."""
    server = FakeApixo(clock, latency=lambda i: 3.0)
    async with _client(clock, server, limits=nb.Limits(concurrent_tasks=1)) as client:
        first = asyncio.ensure_future(client.generate("a cat"))
        second = asyncio.ensure_future(client.generate("a dog"))
        await clock.advance(1.0)
        assert server.count("submit") == 1  # the second waits for the slot
        both = asyncio.gather(first, second)
        await clock.run_until(both.done, limit=120)
        assert [result.task_id for result in both.result()] == ["t0", "t1"]
    assert server.count("submit") == 2


async def test_a_generate_waiting_for_a_slot_refuses_bad_input_before_any_wait(
    clock: FakeClock,
) -> None:
    """With every slot taken, a generate() the provider would refuse raises
    InvalidRequestError at once, as when a slot is free: it never waits, nothing is sent."""
    server = FakeApixo(clock, latency=lambda i: 3.0)
    async with _client(clock, server, limits=nb.Limits(concurrent_tasks=1)) as client:
        first = asyncio.ensure_future(client.generate("a cat"))
        await clock.advance(1.0)
        asked = clock.now()
        with pytest.raises(nb.InvalidRequestError, match="aspect_ratio"):
            await client.generate("a dog", aspect_ratio="7:3")
        assert clock.now() == asked  # raised at once, not once the slot freed
        assert not first.done()
        await clock.run_until(first.done, limit=60)
    assert server.count("submit") == 1


async def test_a_generate_waiting_for_a_slot_when_the_client_closes_gets_client_closed(
    clock: FakeClock,
) -> None:
    """A generate() still waiting for a slot when the client closes raises ClientClosedError
    (nothing was sent for it), not a bare CancelledError."""
    server = FakeApixo(clock, latency=lambda i: 30.0)
    async with _client(clock, server, limits=nb.Limits(concurrent_tasks=1)) as client:
        first = asyncio.ensure_future(client.generate("a cat"))
        second = asyncio.ensure_future(client.generate("a dog"))
        await clock.advance(1.0)
    with pytest.raises(nb.ClientClosedError):
        await second
    with pytest.raises(nb.ClientClosedError):
        await first  # accepted and pending: the close fails it with its id
    assert server.count("submit") == 1


async def test_a_generate_whose_caller_is_cancelled_before_the_create_runs_sends_it_and_logs(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A generate() cancelled right after it started (its create not yet run): the create is
    still sent (a slot was taken for it and the submit handed over), and the accepted task's
    id is logged once, since no caller will hear it."""
    server = FakeApixo(clock, latency=lambda i: 3.0)
    async with _client(clock, server, limits=nb.Limits(concurrent_tasks=5)) as client:
        caller = asyncio.ensure_future(client.generate("a cat"))
        await asyncio.sleep(0)  # generate() ran up to its wait; the create's task did not
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        await clock.advance(1.0)
        assert server.count("submit") == 1
        assert "accepted task t0" in caplog.text
        assert client.statistics().pending == 1  # still tracked


def test_a_lease_makes_its_id_once_and_keeps_a_given_one() -> None:
    """A lease's id is made when first read, the same on every read and unique per lease; a
    lease given an id (a journal key) keeps it."""
    lease, other = Lease(object()), Lease(object())
    assert lease.id == lease.id
    assert len(lease.id) == 32
    assert lease.id != other.id
    assert Lease(object(), "journal-key").id == "journal-key"


async def test_the_in_memory_path_makes_no_random_lease_id(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A generate() through the in-memory ledger never reads random bytes for its lease's id
    (a getrandom() call per task): only a shared ledger reads the id."""

    def refused(n: int) -> bytes:
        raise AssertionError("a lease id was made")

    monkeypatch.setattr(os, "urandom", refused)  # nothing else here reads random bytes
    server = FakeApixo(clock, latency=lambda i: 3.0)
    async with _client(clock, server) as client:
        job = asyncio.ensure_future(client.generate("a cat"))
        await clock.run_until(job.done, limit=60)
        assert (await job).task_id == "t0"


def test_a_latency_group_is_kept_per_model_and_follows_the_transports_url() -> None:
    """A connection answers the same latency group for a model each time, and a new one once
    its transport tells another URL (the local simulator's port is known once it started)."""

    class Moving:
        base_url: str | None = None

    transport = Moving()
    conn = Connection(
        driver=DRIVERS["apixo"],
        transport=cast(Transport, transport),
        base_url="https://configured.example",
        account=cast(Account, None),  # not read by group()
        policy=nb.RetryPolicy(),
        timeouts=nb.Timeouts(),
        wall_clock=time.time,
        random=random.random,
    )
    first = conn.group("nano-banana-2")
    assert first == ("apixo", "https://configured.example", "nano-banana-2")
    assert conn.group("nano-banana-2") is first
    transport.base_url = "http://127.0.0.1:5555"
    assert conn.group("nano-banana-2") == ("apixo", "http://127.0.0.1:5555", "nano-banana-2")
    assert conn.group("nano-banana")[2] == "nano-banana"
