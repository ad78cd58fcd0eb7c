"""Fault matrix row F48, the request window across kill -9 and rerun: the journal remembers
the account's recent sends, so a rerun inside the killed run's window does not overfill it
(fake clock, scripted account)."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from pathlib import Path

import pytest

import nanobanana_async as nb
from nanobanana_async._journal import Journal
from nanobanana_async._redact import key_fingerprint
from nanobanana_async.testing import FakeClock, ScriptedTransport
from tests.chaos.test_fault_matrix_learning import Killable
from tests.fakeapi import LimitedApixo

WALL = 1_700_000_000.0


def client_for(clock: FakeClock, door: Killable, path: Path, limits: nb.Limits) -> nb.Client:
    client = nb.Client(
        "apixo",
        api_key="k",
        transport=ScriptedTransport(door),
        clock=clock,
        random=lambda: 0.5,
        journal=path,
        limits=limits,
        wall_clock=lambda: WALL + clock.now(),
        timeouts=nb.Timeouts(task=300),
    )
    return door.watch(client)


async def window_reruns(
    tmp_path: Path,
    *,
    seed: int,
    cycles: int,
    prompts: int,
    limits: nb.Limits | None = None,
    cap: int = 5,
) -> LimitedApixo:
    """``cycles`` kills, each rerun at the instant of the kill, on an account whose window
    binds (30 requests / 10 s, ``cap`` tasks of ~1.7 s), told ``limits`` (default: the
    account's); the account, after the last run ended."""
    rng = random.Random(seed)
    durations = [rng.lognormvariate(0.5, 0.4) for _ in range(4 * prompts)]
    clock = FakeClock(1000.0)
    server = LimitedApixo(clock, requests=30, per=10, cap=cap, latency=lambda i: durations[i])
    if limits is None:
        limits = nb.Limits(requests=30, per=10, concurrent_tasks=cap)
    accepted: Counter[str] = Counter()
    path = tmp_path / "journal.db"
    killed: list[tuple[Killable, nb.Client, list[asyncio.Future[nb.ImageResult]]]] = []
    for cycle in range(cycles + 1):
        clock = FakeClock(clock.now())  # a new process: its own scheduler and ledger
        server.clock = clock
        door = Killable(server, accepted)
        client = client_for(clock, door, path, limits)
        await client.__aenter__()
        jobs = [asyncio.ensure_future(client.generate(f"cat {i}")) for i in range(prompts)]
        if cycle < cycles:
            until = clock.now() + rng.uniform(4.0, 12.0)
            await clock.run_until(lambda: clock.now() >= until, step=0.1)  # noqa: B023
            await door.kill()  # kill -9: the journal keeps what it had written
            killed.append((door, client, jobs))
            continue
        await clock.run_until(lambda: all(j.done() for j in jobs), step=0.1)  # noqa: B023
        await client.aclose()
    for door, dead, orphans in killed:
        door.bury()
        await dead.aclose()
        await asyncio.gather(*orphans, return_exceptions=True)
    assert max(accepted.values()) == 1  # no prompt paid twice
    return server


@pytest.mark.parametrize("seed", [1, 2])
async def test_f48_a_rerun_inside_the_killed_runs_window_draws_no_429(
    tmp_path: Path, seed: int
) -> None:
    """F48: killed five times on an account whose window binds, each rerun starting at the
    instant of the kill: it counts the killed run's requests still in the window (remembered
    by the journal) and paces from there, so 0 × 429 and never more than 30 requests in 10 s
    (the pace alone kept this one too: a rerun told the limits starts at the pace, no
    burst)."""
    server = await window_reruns(tmp_path, seed=seed, cycles=5, prompts=12)
    assert server.rate_limited == 0
    assert server.max_window <= 30
    assert server.max_running <= 5


@pytest.mark.parametrize(("age", "kept"), [(5.0, True), (31.0, False)])
async def test_f48_a_rerun_keeps_what_the_killed_run_learned(
    clock: FakeClock, tmp_path: Path, age: float, kept: bool
) -> None:
    """F48: the journal says the killed run learned 29 requests / 10 s and 5 tasks ``age``
    seconds ago: a rerun told nothing holds those limits from its first request (it would
    learn them again from 429s), until the quiet period after them (3 windows) ends."""
    path = tmp_path / "journal.db"
    server = LimitedApixo(clock, requests=30, per=10, cap=5, latency=lambda i: 1.0)
    journal = Journal(path, wall_clock=lambda: WALL + clock.now())
    at = WALL + clock.now() - age
    record = {"at": at, "closed": True, "pace": 2.9, "sends": [], "learned": [29, 10.0, 5]}
    await journal.note(f"window.apixo.{key_fingerprint('k')}", json.dumps(record))
    await journal.aclose()
    async with client_for(clock, Killable(server, Counter()), path, nb.Limits()) as client:
        job = asyncio.ensure_future(client.generate("cat"))
        # Read as its create reaches the server: by fake time, not by how long the journal's
        # thread takes under load (fake seconds run on while it works, and 25 of them end
        # the quiet period, when the limits rightly start to climb back).
        await clock.run_until(lambda: server.tasks != {}, step=0.05)
        learned = client.statistics().effective_limits
        await clock.run_until(job.done, step=0.5)
    if kept:
        assert (learned.requests, learned.per, learned.concurrent_tasks) == (29, 10.0, 5)
    else:
        assert learned == nb.Limits()
    assert server.rate_limited == 0


async def test_f48_a_rerun_counts_what_the_killed_run_may_have_sent_unwritten(
    clock: FakeClock, tmp_path: Path
) -> None:
    """F48: the journal's last record of sends says 20 sent and the run was killed after it
    (not closed): a rerun a second later counts those 20 plus what the killed run may have
    sent at its pace until it died; after a clean close it counts the 20 alone."""
    path = tmp_path / "journal.db"
    limits = nb.Limits(requests=30, per=10, concurrent_tasks=5)
    server = LimitedApixo(clock, requests=30, per=10, cap=5, latency=lambda i: 1.0)
    name = f"window.apixo.{key_fingerprint('k')}"
    counted = []
    for closed in (False, True):
        journal = Journal(path, wall_clock=lambda: WALL + clock.now())
        sends = [[WALL + clock.now() - 1.0, 20]]
        record = {"at": WALL + clock.now() - 1.0, "closed": closed, "pace": 3.0, "sends": sends}
        await journal.note(name, json.dumps(record))
        await journal.aclose()
        async with client_for(clock, Killable(server, Counter()), path, limits) as client:
            job = asyncio.ensure_future(client.generate(f"cat {closed}"))
            await clock.run_until(lambda: server.tasks != {}, step=0.05)
            counted.append(client.statistics().requests_in_window)
            await clock.run_until(job.done, step=0.5)
        await clock.advance(20.0)  # the next run starts on an empty window
        server.tasks.clear()
    # Killed: 20, then 3 / s for the 1 s since the last write, then this run's create.
    assert counted == [20 + 3 + 1, 20 + 1]


@pytest.mark.parametrize(
    "raw",
    [
        '{"at": %(at)s, "closed": false, "pace": NaN, "sends": []}',
        '{"at": %(at)s, "closed": false, "pace": 1e999, "sends": []}',
        '{"at": NaN, "closed": false, "pace": 3.0, "sends": []}',
        '{"at": %(at)s, "closed": true, "pace": 3.0, "sends": [[%(at)s, 1e999]]}',
        '{"at": %(at)s, "closed": false, "pace": 1e300, "sends": []}',
    ],
)
async def test_f48_a_damaged_record_of_sends_seeds_nothing_and_the_rerun_runs(
    clock: FakeClock, tmp_path: Path, raw: str
) -> None:
    """F48: a record of sends whose numbers are damaged (NaN, infinite) seeds nothing: the
    rerun starts, sends and finishes its prompt (it must never fail to start over it)."""
    path = tmp_path / "journal.db"
    server = LimitedApixo(clock, requests=30, per=10, cap=5, latency=lambda i: 1.0)
    journal = Journal(path, wall_clock=lambda: WALL + clock.now())
    await journal.note(
        f"window.apixo.{key_fingerprint('k')}", raw % {"at": repr(WALL + clock.now() - 1.0)}
    )
    await journal.aclose()
    limits = nb.Limits(requests=30, per=10, concurrent_tasks=5)
    async with client_for(clock, Killable(server, Counter()), path, limits) as client:
        job = asyncio.ensure_future(client.generate("cat"))
        await clock.run_until(job.done, step=0.5)
        assert client.statistics().requests_sent >= 2  # its create and a check
    assert job.result().urls


async def test_f48_sends_recorded_ahead_of_this_wall_clock_count_as_sent_now(
    clock: FakeClock, tmp_path: Path
) -> None:
    """F48: the journal says 30 requests were sent an hour ahead of this machine's wall clock
    (the clock was set back, or another machine wrote it): they count as sent now, so the rerun
    waits one window at most, never the hour until they would leave a window in the future."""
    path = tmp_path / "journal.db"
    server = LimitedApixo(clock, requests=30, per=10, cap=5, latency=lambda i: 1.0)
    journal = Journal(path, wall_clock=lambda: WALL + clock.now())
    ahead = WALL + clock.now() + 3600.0
    record = {"at": ahead, "closed": True, "pace": 3.0, "sends": [[ahead, 30]]}
    await journal.note(f"window.apixo.{key_fingerprint('k')}", json.dumps(record))
    await journal.aclose()
    limits = nb.Limits(requests=30, per=10, concurrent_tasks=5)
    started = clock.now()
    async with client_for(clock, Killable(server, Counter()), path, limits) as client:
        job = asyncio.ensure_future(client.generate("cat"))
        await clock.run_until(job.done, step=0.5, limit=7200)
    assert job.result().urls
    assert clock.now() - started < 60.0
    assert server.rate_limited == 0


async def test_f48_concurrent_first_submits_of_a_rerun_wait_for_the_killed_runs_window(
    clock: FakeClock, tmp_path: Path
) -> None:
    """F48: the journal says the killed run sent 30 requests half a second ago; a rerun's
    first submits come all at once (``gather``): none goes before the client has read that
    record (each one counts the killed run's sends), so 0 × 429 and at most 30 in 10 s."""
    path = tmp_path / "journal.db"
    server = LimitedApixo(clock, requests=30, per=10, cap=5, latency=lambda i: 1.0)
    # The killed run's 30 are in the provider's window too: it is full for 9.45 s. Its note
    # says half a second ago, each send rounded up to its tenth of a second as the client
    # writes them: a note at the server's very instant would leave the rerun's first send on a
    # knife edge, early by the float error of the wall clock (1e-7 s at 1.7e9), at a rounding
    # that depends on how far the fake clock ran while the journal was read (the load).
    server.accepted = [clock.now() - 0.55] * 30
    journal = Journal(path, wall_clock=lambda: WALL + clock.now())
    sends = [[WALL + clock.now() - 0.5, 30]]
    record = {"at": WALL + clock.now() - 0.5, "closed": True, "pace": 3.0, "sends": sends}
    await journal.note(f"window.apixo.{key_fingerprint('k')}", json.dumps(record))
    await journal.aclose()
    limits = nb.Limits(requests=30, per=10, concurrent_tasks=5)
    client = client_for(clock, Killable(server, Counter()), path, limits)
    try:  # not entered first: the first submit starts the client
        jobs = [asyncio.ensure_future(client.generate(f"cat {i}")) for i in range(4)]
        await clock.run_until(lambda: all(j.done() for j in jobs), step=0.1, limit=600)
    finally:
        await client.aclose()
    assert all(j.result().urls for j in jobs)
    assert server.rate_limited == 0
