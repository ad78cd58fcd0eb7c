"""Fault matrix rows F48–F49: re-attached tasks keep the provider's age across kill and rerun,
and a 429 storm is one episode with one cut (fake clock, scripted account)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import anyio.to_thread
import pytest

import nanobanana_async as nb
from nanobanana_async._journal import Journal
from nanobanana_async.testing import (
    FakeClock,
    HttpRequest,
    HttpResponse,
    ScriptedTransport,
    json_response,
)
from tests.chaos.test_fault_matrix_ledger import _create as create_request
from tests.chaos.test_fault_matrix_ledger import client_for
from tests.fakeapi import FakeApixo, LimitedApixo

LOWERED = "account limits lowered"


def lowered(caplog: pytest.LogCaptureFixture) -> int:
    return sum(
        1 for r in caplog.records if r.levelno == logging.WARNING and LOWERED in r.getMessage()
    )


def too_many(headers: dict[str, str]) -> HttpResponse:
    body = {"code": 429, "message": "Rate limit exceeded", "data": None}
    return json_response(body, status=429, headers=headers)


@pytest.mark.parametrize("headers", [{"retry-after": "0"}, {}], ids=["zero", "missing"])
async def test_f49_ten_status_429s_without_a_usable_hint_are_one_cut(
    clock: FakeClock, caplog: pytest.LogCaptureFixture, headers: dict[str, str]
) -> None:
    """F49: ten status 429s with Retry-After 0 (or none) are one episode: one cut of 600/10 s
    (to 420, not walked down to 16), one WARNING, a bounded pause, every task still done."""
    server = FakeApixo(clock, latency=lambda i: 3.0)
    refused = [10]

    def hook(request: HttpRequest) -> HttpResponse | None:
        if request.kind == "status" and refused[0] > 0:
            refused[0] -= 1
            return too_many(headers)
        return None

    server.hook = hook
    limits = nb.Limits(requests=600, per=10, concurrent_tasks=50)
    with caplog.at_level(logging.WARNING, logger="nanobanana_async"):
        async with client_for(clock, server, limits=limits) as client:
            jobs = [asyncio.ensure_future(client.generate(f"cat {i}")) for i in range(10)]
            await clock.run_until(lambda: all(j.done() for j in jobs), step=0.1)
            effective = client.statistics().effective_limits
    assert refused[0] == 0  # all ten 429s were answered
    assert all(isinstance(j.result(), nb.ImageResult) for j in jobs)
    assert effective.requests / effective.per >= 42.0  # one 30 % cut at most
    assert lowered(caplog) == 1


async def test_f49_a_burst_of_create_429s_is_one_cut_never_below_the_cap_shown(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """F49: told 50 tasks on an account of 5, 20 creates at once draw one burst of 15 429s:
    one cut, one WARNING, and the learned cap never goes below the 5 the account ran."""
    server = LimitedApixo(clock, requests=1000, per=10, cap=5, latency=lambda i: 5.0)

    def slow(request: HttpRequest) -> asyncio.Future[HttpResponse]:
        # Counted on arrival, answered a second later: all twenty creates are in flight at once.
        answer = server(request)
        assert isinstance(answer, HttpResponse)

        async def later() -> HttpResponse:
            await clock.sleep_until(clock.now() + 1.0)
            return answer

        return asyncio.ensure_future(later())

    limits = nb.Limits(requests=600, per=10, concurrent_tasks=50)
    caps: list[int] = []
    with caplog.at_level(logging.WARNING, logger="nanobanana_async"):
        async with nb.Client(
            "apixo",
            api_key="k",
            transport=ScriptedTransport(slow),
            clock=clock,
            random=lambda: 0.5,
            limits=limits,
        ) as client:
            jobs = [asyncio.ensure_future(client.generate(f"cat {i}")) for i in range(20)]

            def finished() -> bool:
                caps.append(client.statistics().effective_limits.concurrent_tasks)
                return all(j.done() for j in jobs)

            await clock.run_until(finished, step=0.05)
    assert all(isinstance(j.result(), nb.ImageResult) for j in jobs)
    assert server.rate_limited == 15  # the one burst, nothing after it
    assert server.max_running == 5
    assert min(caps) == 5
    assert lowered(caplog) == 1


class KilledError(Exception):
    """A journal write the killed process never made."""


class Killable:
    """One process's doors to the account and to its journal: after :meth:`kill` nothing it
    sends arrives and nothing more it writes reaches the journal, as for a process stopped by
    kill -9 (its sends and journal calls hang for ever).

    The killed client stays alive in the test's process and shares the journal's file with
    the rerun: without the journal door its writes still in the journal's queue would land
    after the rerun has read the journal (under load, seconds of fake time later), which a
    dead process never does.
    """

    def __init__(self, server: LimitedApixo, prompts: Counter[str]) -> None:
        self.server = server
        self.prompts = prompts
        self.dead = False
        self._journals: list[Journal] = []
        self._buried = asyncio.Event()

    def __call__(
        self, request: HttpRequest
    ) -> HttpResponse | BaseException | asyncio.Future[HttpResponse]:
        if self.dead:
            return asyncio.get_running_loop().create_future()  # never answered
        answer = self.server(request)
        assert isinstance(answer, HttpResponse)
        if request.kind == "submit" and answer.status == 200:
            body = request.json
            assert isinstance(body, dict)
            self.prompts[body["input"]["prompt"]] += 1
        return answer

    def watch(self, client: nb.Client) -> nb.Client:
        """Put ``client``'s journal (if it has one) behind this door; returns ``client``."""
        hooks = client._life.journal
        if hooks is None:
            return client
        journal, run = hooks.journal, hooks.journal._run

        async def guarded(fn: Callable[[sqlite3.Connection], object]) -> object:
            def call(db: sqlite3.Connection) -> object:
                # On the journal's thread, under its lock: nothing starts after the kill.
                if self.dead:
                    raise KilledError
                return fn(db)

            if not self.dead:
                with contextlib.suppress(KilledError):
                    return await run(call)
            await self._buried.wait()  # the test is over: let the orphan fail and close
            raise OSError("killed by kill -9")

        # The instance's own journal call, so every write of this client goes through here.
        journal._run = guarded  # type: ignore[method-assign]
        self._journals.append(journal)
        return client

    async def kill(self) -> None:
        """kill -9: no more sends or journal writes. A write the journal's thread is making
        at this instant lands first (the process died right after it committed)."""
        self.dead = True
        for journal in self._journals:
            await anyio.to_thread.run_sync(_wait_for, journal._lock)

    def bury(self) -> None:
        """After the test's checks: the killed client's hung journal calls fail, so it closes."""
        self._buried.set()


def _wait_for(lock: threading.Lock) -> None:
    with lock:
        pass


async def test_f48_the_simulated_kill_lets_no_later_journal_write_land(
    clock: FakeClock, tmp_path: Path
) -> None:
    """F48's simulated kill -9: a journal write the killed client starts after the kill never
    reaches the file (the rerun reads what a dead process left); the test's cleanup fails it."""
    path = tmp_path / "journal.db"
    door = Killable(LimitedApixo(clock, requests=1000, per=10, cap=5), Counter())
    client = door.watch(client_for(clock, door.server, journal=path))
    hooks = client._life.journal
    assert hooks is not None
    await hooks.journal.record_intent("before", "apixo", nb.ImageRequest(prompt="a cat"))
    await door.kill()
    late = asyncio.ensure_future(
        hooks.journal.record_intent("after", "apixo", nb.ImageRequest(prompt="a dog"))
    )
    await asyncio.sleep(0.05)  # real time: the journal's thread would have written it by now
    reader = Journal(path)
    keys = [entry.key for entry in await reader.entries()]
    await reader.aclose()
    assert not late.done()
    assert keys == ["before"]
    door.bury()
    with pytest.raises(OSError, match="kill -9"):
        await late
    await client.aclose()


async def rerun_cycles(tmp_path: Path, *, seed: int, cycles: int, prompts: int) -> None:
    rng = random.Random(seed)
    durations = [rng.lognormvariate(2.5, 0.5) for _ in range(4 * prompts)]  # ~12 s median
    clock = FakeClock(1000.0)
    server = LimitedApixo(clock, requests=1000, per=10, cap=5, latency=lambda i: durations[i])
    accepted: Counter[str] = Counter()
    path = tmp_path / "journal.db"
    limits = nb.Limits(requests=600, per=10, concurrent_tasks=5)
    killed: list[tuple[Killable, nb.Client, list[asyncio.Future[nb.ImageResult]]]] = []
    for cycle in range(cycles + 1):
        clock = FakeClock(clock.now())  # a new process: its own scheduler and ledger
        server.clock = clock
        door = Killable(server, accepted)
        client = nb.Client(
            "apixo",
            api_key="k",
            transport=ScriptedTransport(door),
            clock=clock,
            random=lambda: 0.5,
            journal=path,
            limits=limits,
            wall_clock=lambda clock=clock: 1_700_000_000.0 + clock.now(),  # type: ignore[misc]
            timeouts=nb.Timeouts(task=300),
        )
        door.watch(client)
        await client.__aenter__()
        jobs = [asyncio.ensure_future(client.generate(f"cat {i}")) for i in range(prompts)]
        if cycle < cycles:
            until = clock.now() + rng.uniform(3.0, 25.0)
            await clock.run_until(lambda: clock.now() >= until, step=0.25)  # noqa: B023
            await door.kill()  # kill -9: the journal keeps what it had written
            killed.append((door, client, jobs))
            continue
        await clock.run_until(lambda: all(j.done() for j in jobs), step=0.25)  # noqa: B023
        outcomes = [j.exception() or j.result() for j in jobs]
        await client.aclose()
    assert server.rate_limited == 0
    assert server.max_running <= 5
    assert max(accepted.values()) == 1  # no prompt paid twice
    assert all(
        isinstance(o, nb.ImageResult | nb.SubmitOutcomeUnknownError)
        for o in outcomes  # an intent with no task id is reported, never sent again
    ), [repr(o)[:200] for o in outcomes]
    for door, dead, orphans in killed:
        door.bury()
        await dead.aclose()
        await asyncio.gather(*orphans, return_exceptions=True)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_f48_kill_and_rerun_cycles_keep_the_cap(tmp_path: Path, seed: int) -> None:
    """F48: kill -9 and rerun, eight cycles on a 5-task account: re-attached tasks keep their
    slots while tracked and age from the journal, so 0 × 429, never over the cap, and no
    prompt paid twice."""
    await rerun_cycles(tmp_path, seed=seed, cycles=8, prompts=12)


async def test_f48_a_reattached_task_keeps_its_slot_when_the_model_is_learned(
    clock: FakeClock, tmp_path: Path
) -> None:
    """F48: a rerun re-attaches a long task (its slot first held to the default horizon); when
    three short tasks then teach the model a p99.9 already past for it, its slot stays held
    while it is tracked, so no create goes over the cap; its age is the journal's."""
    latencies = {0: 60.0}
    server = LimitedApixo(
        clock, requests=1000, per=10, cap=2, latency=lambda i: latencies.get(i, 2.0)
    )
    wall = [1_700_000_000.0]
    path = tmp_path / "journal.db"
    killed = Journal(path, wall_clock=lambda: wall[0])
    request = nb.ImageRequest(prompt="a long task, accepted before the kill")
    await killed.record_intent("a", "apixo", request)
    server.create(create_request("a"))
    await killed.record_submitted("a", "t0", "nano-banana-2")
    await killed.aclose()
    accepted_at = wall[0]
    await clock.advance(5.0)
    wall[0] += 5.0
    rerun_clock = FakeClock(clock.now())  # a new process: its own scheduler and ledger
    server.clock = rerun_clock
    rerun = client_for(
        rerun_clock,
        server,
        journal=path,
        wall_clock=lambda: wall[0] + rerun_clock.now() - clock.now(),
        limits=nb.Limits(concurrent_tasks=2),
    )
    async with rerun:
        again = await rerun.submit(request, key="a")
        for i in range(3):  # one slot left: three short tasks in turn teach the model
            job = asyncio.ensure_future(rerun.generate(f"short {i}"))
            await rerun_clock.run_until(job.done, step=0.5)
            assert isinstance(job.result(), nb.ImageResult)
        pair = [asyncio.ensure_future(rerun.generate(f"then {i}")) for i in range(2)]
        await rerun_clock.run_until(lambda: all(j.done() for j in pair), step=0.5)
        assert all(isinstance(j.result(), nb.ImageResult) for j in pair)
        await rerun_clock.run_until(again.done, step=0.5)
        result = await again
    assert server.rate_limited == 0
    assert server.max_running == 2
    assert result.submitted_at.timestamp() == pytest.approx(accepted_at, abs=0.5)


async def test_f48_a_resumed_task_ages_from_the_providers_create_time(clock: FakeClock) -> None:
    """F48: a task resumed by id, whose status answers carry the provider's createTime, counts
    its age from then (its result's ``submitted_at``), never from the resume."""
    server = FakeApixo(clock, latency=lambda i: 80.0)
    server.create(create_request("made before this process started"))
    wall = 1_700_000_000.0
    created_ms = int((wall - 60.0) * 1000)

    def hook(request: HttpRequest) -> HttpResponse | None:
        if request.kind != "status":
            return None
        answer = server.status(request)
        body = json.loads(answer.body)
        body["data"]["createTime"] = created_ms
        return json_response(body)

    server.hook = hook
    async with client_for(clock, server, wall_clock=lambda: wall + clock.now() - 1000.0) as client:
        task = client.resume("t0", model="nano-banana-2")
        await clock.run_until(task.done, step=1.0)
        result = await task
    assert result.submitted_at.timestamp() == pytest.approx(created_ms / 1000, abs=0.01)
