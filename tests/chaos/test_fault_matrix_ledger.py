"""Fault matrix rows F28–F30, F34–F36: the account ledger holds the provider's limits through
ambiguity, deadlines, closes, restarts and unknown limits (fake clock, scripted account)."""

from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path

import pytest

import nanobanana_async as nb
from nanobanana_async._journal import Journal
from nanobanana_async._scheduler._ledger import _CAP_EPISODE, DEFAULT_HORIZON, Lease, Ledger
from nanobanana_async.testing import (
    FakeClock,
    HttpRequest,
    HttpResponse,
    ScriptedTransport,
    json_response,
    settle,
)
from tests.fakeapi import LimitedApixo


def client_for(
    clock: FakeClock, server: LimitedApixo, *, key: str = "k", **kwargs: object
) -> nb.Client:
    return nb.Client(
        "apixo",
        api_key=key,
        transport=ScriptedTransport(server),
        clock=clock,
        random=lambda: 0.5,
        **kwargs,  # type: ignore[arg-type]
    )


def _create(prompt: str) -> HttpRequest:
    return HttpRequest(method="POST", path="/x", json={"input": {"prompt": prompt}}, kind="submit")


def ambiguous(kind: str, server: LimitedApixo) -> object:
    """A create that reaches the provider (the task exists) but whose answer is lost."""

    def hook(request: HttpRequest) -> HttpResponse | BaseException | None:
        if request.kind != "submit" or server.hook is None:
            return None
        server.hook = None  # only the first create
        server.create(request)
        if kind == "reset":
            return nb.RequestTimeoutError("connection reset after the request was sent")
        if kind == "malformed":
            return HttpResponse(status=200, headers={}, body=b'{"code": 200, "data": {"ta')
        return json_response({"code": 500, "message": "Internal error"}, status=500)

    return hook


@pytest.mark.parametrize("kind", ["reset", "malformed", "server_error"])
async def test_f28_ambiguous_submit_holds_its_slot(clock: FakeClock, kind: str) -> None:
    """F28: a create of unknown outcome keeps its slot until the task's horizon, so the
    provider never sees cap + 1 tasks running and answers no 429."""
    server = LimitedApixo(clock, requests=1000, per=60, cap=2, latency=lambda i: 100.0)
    server.hook = ambiguous(kind, server)  # type: ignore[assignment]
    async with client_for(clock, server, limits=nb.Limits(concurrent_tasks=2)) as client:
        first = asyncio.ensure_future(client.generate("lost answer"))
        await clock.run_until(first.done)
        assert isinstance(first.exception(), nb.SubmitOutcomeUnknownError)
        jobs = [asyncio.ensure_future(client.generate(f"cat {i}")) for i in range(3)]
        await clock.run_until(lambda: all(j.done() for j in jobs), step=1.0)
        assert all(isinstance(j.result(), nb.ImageResult) for j in jobs)
        assert client.statistics().in_flight == 0  # the horizon passed, everything freed
    assert server.max_running <= 2
    assert server.rate_limited == 0


async def test_f29_task_past_its_deadline_keeps_its_slot(clock: FakeClock) -> None:
    """F29: a task whose deadline passed may still run, so the next create waits for its
    horizon instead of drawing a 429 from the provider's cap."""
    server = LimitedApixo(clock, requests=1000, per=60, cap=1, latency=lambda i: 100.0)
    async with client_for(clock, server, limits=nb.Limits(concurrent_tasks=1)) as client:
        job = asyncio.ensure_future(client.generate("slow", timeout=20))
        await clock.run_until(job.done)
        assert isinstance(job.exception(), nb.TaskTimeoutError)
        second = asyncio.ensure_future(client.generate("next"))
        await clock.run_until(second.done, step=1.0)
        assert isinstance(second.result(), nb.ImageResult)
    assert server.max_running == 1
    assert server.rate_limited == 0


async def test_f29_closing_one_of_two_same_key_clients_keeps_its_slots(clock: FakeClock) -> None:
    """F29: a closed client's tasks still run; the other client on the key waits for them."""
    server = LimitedApixo(clock, requests=1000, per=60, cap=1, latency=lambda i: 100.0)
    limits = nb.Limits(concurrent_tasks=1)
    async with client_for(clock, server, limits=limits) as other:
        first = client_for(clock, server, limits=limits)
        async with first:
            job = asyncio.ensure_future(first.generate("left running"))
            await clock.run_until(lambda: server.count("submit") == 1)
        await settle()
        assert isinstance(job.exception(), nb.ClientClosedError)
        second = asyncio.ensure_future(other.generate("next"))
        await clock.run_until(second.done, step=1.0)
        assert isinstance(second.result(), nb.ImageResult)
    assert server.max_running == 1
    assert server.rate_limited == 0


async def test_f29_resume_at_the_cap_takes_a_slot(clock: FakeClock) -> None:
    """F29: a resumed task runs on the provider, so it counts against the cap even when no
    slot is free; new creates wait until the account really has room."""
    server = LimitedApixo(clock, requests=1000, per=60, cap=2, latency=lambda i: 50.0)
    async with client_for(clock, server, limits=nb.Limits(concurrent_tasks=2)) as client:
        # Two tasks another process created.
        for _ in range(2):
            server.create(_create("p"))
        resumed = [client.resume(task_id, model="nano-banana-2") for task_id in ("t0", "t1")]
        assert client.statistics().in_flight == 2
        job = asyncio.ensure_future(client.generate("new"))
        await clock.run_until(job.done, step=1.0)
        assert isinstance(job.result(), nb.ImageResult)
        for task in resumed:
            assert isinstance(await task, nb.ImageResult)
    assert server.max_running == 2
    assert server.rate_limited == 0


async def test_f30_aclose_fails_every_waiter_and_sends_nothing_after(
    clock: FakeClock, loop_errors: list[object]
) -> None:
    """F30: closing with 10,000 callers waiting for 1,000 slots fails every waiter with
    ClientClosedError; not one request is sent after the close, and nothing is left running."""
    server = LimitedApixo(clock, requests=100_000, per=60, cap=1000, latency=lambda i: 30.0)
    client = client_for(clock, server)
    before = asyncio.all_tasks()
    async with client:
        jobs = [asyncio.ensure_future(client.generate(f"cat {i}")) for i in range(10_000)]
        await clock.run_until(lambda: server.count("submit") >= 500, step=0.05)
        await client.aclose()
        sent = len(server.log)
        await clock.advance(120)
    assert len(server.log) == sent
    assert all(job.done() for job in jobs)
    errors = [job.exception() for job in jobs]
    assert all(isinstance(e, nb.ClientClosedError) for e in errors)
    assert sum(1 for e in errors if e is not None and e.task_id is None) >= 9000
    await asyncio.sleep(0)
    assert asyncio.all_tasks() - before <= {asyncio.current_task()}
    assert not loop_errors


async def test_f34_a_refused_submit_clears_its_intent_while_it_waits(
    clock: FakeClock, tmp_path: Path
) -> None:
    """F34: a 429 on a create clears the journal's intent before the Retry-After wait, so a kill
    during the wait leaves no "unknown outcome"; the intent is written again before the send."""
    server = LimitedApixo(clock, requests=1000, per=60, cap=10, latency=lambda i: 5.0)
    refusals = [json_response({"code": 429, "message": "slow down"}, 429, {"retry-after": "30"})]
    server.hook = lambda r: refusals.pop() if r.kind == "submit" and refusals else None
    path = tmp_path / "journal.db"
    async with client_for(clock, server, journal=path) as client:
        job = asyncio.ensure_future(client.generate("a cat"))
        await clock.run_until(lambda: server.count("submit") == 1)
        await clock.advance(10)  # inside the Retry-After: a kill now ...
        reader = Journal(path)
        rows = await reader.entries()
        for _ in range(100):  # the journal writes on a thread: give it real time
            if not rows:
                break
            await asyncio.sleep(0.02)
            rows = await reader.entries()
        assert rows == []  # ... would leave nothing to call unknown
        await clock.run_until(job.done)
        rows = await reader.entries()
        await reader.aclose()
    # One row, with the task's id (its end may already be recorded too).
    assert [(r.state != "unknown", r.task_id) for r in rows] == [(True, job.result().task_id)]


async def test_f35_a_rerun_holds_slots_for_tasks_that_may_still_run(
    clock: FakeClock, tmp_path: Path
) -> None:
    """F35 (restart): a rerun right after a kill holds slots for the journal's accepted tasks and
    intents of unknown outcome until their horizon, so it draws no 429 from the cap."""
    server = LimitedApixo(clock, requests=1000, per=60, cap=2, latency=lambda i: 40.0)
    wall = [1_700_000_000.0]
    path = tmp_path / "journal.db"
    killed = Journal(path, wall_clock=lambda: wall[0])
    request = nb.ImageRequest(prompt="accepted before the kill")
    await killed.record_intent("a", "apixo", request)
    server.create(_create("a"))
    await killed.record_submitted("a", "t0", "nano-banana-2")
    await killed.record_intent("b", "apixo", nb.ImageRequest(prompt="sent as the kill came"))
    server.create(_create("b"))
    await killed.aclose()
    wall[0] += 1.0
    rerun_clock = FakeClock(clock.now())  # a new process: its own scheduler and ledger
    rerun = client_for(
        rerun_clock,
        server,
        journal=path,
        wall_clock=lambda: wall[0],
        limits=nb.Limits(concurrent_tasks=2),
    )
    server.clock = rerun_clock
    async with rerun:
        again = await rerun.submit(request, key="a")  # re-attaches, no new slot
        assert rerun.statistics().in_flight == 2
        new = asyncio.ensure_future(rerun.generate("a new prompt"))
        await rerun_clock.run_until(new.done, step=1.0)
        assert isinstance(new.result(), nb.ImageResult)
        assert isinstance(await again, nb.ImageResult)
    assert server.rate_limited == 0
    assert server.max_running == 2


async def run_300(limits: nb.Limits | None) -> tuple[float, nb.ClientStatistics, LimitedApixo]:
    """300 generations on an account of 600 requests / 10 s and 50 tasks; fake seconds taken."""
    clock = FakeClock(1000.0)
    rng = random.Random(7)
    durations = [rng.lognormvariate(0.0, 0.3) for _ in range(300)]
    server = LimitedApixo(clock, requests=600, per=10, cap=50, latency=lambda i: durations[i])
    async with client_for(clock, server, limits=limits) as client:
        jobs = [asyncio.ensure_future(client.generate(f"cat {i}")) for i in range(300)]
        await clock.run_until(lambda: all(j.done() for j in jobs), step=0.05)
        stats = client.statistics()
    assert all(isinstance(j.result(), nb.ImageResult) for j in jobs)
    return clock.now() - 1000.0, stats, server


async def test_f36_default_limits_learn_a_smaller_account(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """F36: told the defaults (10,000 / 60 s, 1,000 tasks) on an account of 600 / 10 s and 50
    tasks, the client draws 429s at most twice over 300 tasks (once at the cap, once at the
    window; requests already sent at that same instant draw one each), loses nothing, pays
    nothing twice, and keeps at least 0.65 of the throughput of the same client told the real
    limits (0.71 before that client learned to spend idle requests on earlier checks; the
    default one, never sure a request is idle, does not, and takes 16.3-16.7 fake seconds)."""
    with caplog.at_level(logging.WARNING, logger="nanobanana_async"):
        elapsed, stats, server = await run_300(None)
    informed, _, _ = await run_300(nb.Limits(requests=600, per=10, concurrent_tasks=50))
    assert len(server.tasks) == 300  # one create per prompt: nothing paid twice
    assert len(set(server.limited_at)) <= 2
    assert server.rate_limited <= 4
    assert server.max_running <= 50
    assert server.max_window <= 600
    assert informed / elapsed >= 0.65
    assert elapsed <= 17.5  # fake seconds, fixed seeds: the default client did not slow down
    assert stats.effective_limits.concurrent_tasks < stats.limits.concurrent_tasks
    assert stats.effective_limits.requests / stats.effective_limits.per <= 60
    assert any("account limits lowered" in r.getMessage() for r in caplog.records)


async def test_f28_a_default_horizon_shrinks_once_latency_is_learned(clock: FakeClock) -> None:
    """F28: a slot held on the conservative default horizon (nothing learned yet) is freed at
    the learned p99.9 horizon as soon as the model is learned, not minutes later."""
    server = LimitedApixo(clock, requests=1000, per=60, cap=2, latency=lambda i: 10.0)
    server.hook = ambiguous("reset", server)  # type: ignore[assignment]
    async with client_for(clock, server, limits=nb.Limits(concurrent_tasks=2)) as client:
        first = asyncio.ensure_future(client.generate("lost answer"))
        await clock.run_until(first.done)
        start = clock.now()
        for i in range(3):  # one slot left: three tasks one after another teach the model
            job = asyncio.ensure_future(client.generate(f"cat {i}"))
            await clock.run_until(job.done, step=0.5)
        await clock.advance(1.0)
        assert client.statistics().in_flight == 0
        assert clock.now() - start < DEFAULT_HORIZON / 2
    assert server.rate_limited == 0


@pytest.mark.parametrize("later", [1.0, 30.0], ids=["same-episode", "next-episode"])
async def test_f36_a_cap_429_under_a_cap_learned_one_too_high_lowers_the_cap_not_the_pace(
    clock: FakeClock, later: float
) -> None:
    """F36 (issue 19): told the defaults on an account of 50 tasks, the client learned a cap of
    51 (a create sent before the cut was accepted while a task the provider had finished still
    counted as running). A create refused at 50 running, with the window nearly empty, is
    the cap again: the cap goes back to 50 and the pace stays where it was (it used to be
    read as a window 429 and the pace cut to what the window held, 0.35 of the told client)."""
    ledger = Ledger(nb.Limits(), clock)
    owner = object()

    def create() -> Lease:
        lease = ledger.slots.take(owner)  # admitted and sent
        ledger.note_send()
        return lease

    running = [create() for _ in range(50)]
    for lease in running:
        ledger.note_accepted(lease)
    refused, in_flight = create(), create()  # both sent before the provider's answer
    assert ledger.rate_limited(retry_after=None, creating=True)  # the cap: 50
    ledger.slots.release(refused)
    assert ledger.effective.concurrent_tasks == 50
    # One running task ends on the provider (the client has not seen it yet), so the create
    # in flight is accepted: 51 seem to run, and the learned cap goes back up to 51.
    ledger.note_accepted(in_flight)
    assert ledger.effective.concurrent_tasks == 51
    await clock.advance(later)
    ledger.slots.release(running.pop())  # the client sees that task end: 50 seem to run
    pace = ledger.effective.requests / ledger.effective.per
    refused = create()
    assert ledger.requests_in_window() < 60  # the window (10,000 / 60 s) is nearly empty

    assert ledger.rate_limited(retry_after=1.0, creating=True)  # read as the cap
    assert ledger.effective.requests / ledger.effective.per == pace  # the pace is not cut
    assert not ledger.is_paused()
    if later < _CAP_EPISODE:  # the window is not known: the episode is not the default's 60 s
        # Inside the episode of the first cut the cap stays (what runs now is not what ran
        # when the provider refused): the first cap 429 after the episode lowers it.
        assert ledger.effective.concurrent_tasks == 51
        ledger.slots.release(refused)
        await clock.advance(ledger.effective.per)
        refused = create()
        assert ledger.rate_limited(retry_after=1.0, creating=True)
        assert ledger.effective.requests / ledger.effective.per == pace
    assert ledger.effective.concurrent_tasks == 50
    await ledger.aclose()
