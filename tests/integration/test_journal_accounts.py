"""The journal names the account holding each task (provider + key fingerprint, never the key),
so a rerun goes back to it and another key neither checks nor resubmits it (issue 21, item 6)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

import nanobanana_async as nb
from nanobanana_async._journal import Journal
from nanobanana_async._redact import key_fingerprint
from nanobanana_async.cli import main
from nanobanana_async.testing import Latency, Simulator

FAST = Latency(median=0.3, sigma=0.1)
OTHER_KEY = "sim-the-other-account-key"


async def _entries(db: Path) -> list[object]:
    journal = Journal(db, create=False)
    try:
        return list(await journal.entries())
    finally:
        await journal.aclose()


async def test_a_task_of_another_key_is_neither_checked_nor_resubmitted(
    tmp_path: Path, canary: str
) -> None:
    """A rerun with another key of the provider gets WrongAccountError naming the holder by
    fingerprint; nothing is sent for it; the holder's key then resumes the same task."""
    db = tmp_path / "run.db"
    async with Simulator("apixo", latency=FAST, api_key=canary) as sim:
        async with nb.Client("apixo", api_key=canary, base_url=sim.base_url, journal=db) as a:
            task = await a.submit(nb.ImageRequest(prompt="a cat"), key="line-1")
        with pytest.raises(nb.ClientClosedError):
            await task
        checks = sim.stats.checks[task.id]
        sim.api_key = OTHER_KEY  # the server now knows the second account's key
        async with nb.Client("apixo", api_key=OTHER_KEY, base_url=sim.base_url, journal=db) as b:
            with pytest.raises(nb.WrongAccountError) as caught:
                await b.submit(nb.ImageRequest(prompt="a cat"), key="line-1")
            fresh = await b.generate("a dog", timeout=10)
        assert sim.stats.checks[task.id] == checks  # not polled with the wrong key
        assert sim.stats.requests["create"] == 2  # "a cat" once, "a dog" once
        error = caught.value
        assert (error.provider, error.task_id) == ("apixo", task.id)
        assert error.account == key_fingerprint(canary) != key_fingerprint(OTHER_KEY)
        assert canary not in str(error)
        assert canary not in repr(error)
        sim.api_key = canary
        async with nb.Client("apixo", api_key=canary, base_url=sim.base_url, journal=db) as a:
            result = await (await a.submit(nb.ImageRequest(prompt="a cat"), key="line-1"))
    assert result.task_id == task.id
    assert fresh.task_id != task.id
    assert sim.stats.creates == 2
    accounts = {e.key: e.account for e in await _entries(db)}  # type: ignore[attr-defined]
    assert accounts["line-1"] == key_fingerprint(canary)
    assert canary.encode() not in db.read_bytes()


async def test_another_keys_running_task_holds_none_of_this_accounts_slots(
    tmp_path: Path,
) -> None:
    """A rerun with another key does not wait on the other account's journaled tasks: with
    one slot, its own prompt is submitted at once."""
    db = tmp_path / "run.db"
    stuck = nb.ImageRequest(prompt="a cat [[stuck]]")
    async with Simulator("apixo", latency=FAST) as sim:
        first_key = sim.api_key
        async with nb.Client("apixo", api_key=first_key, base_url=sim.base_url, journal=db) as a:
            await a.submit(stuck, key="line-1")
        sim.api_key = OTHER_KEY
        async with nb.Client(
            "apixo",
            api_key=OTHER_KEY,
            base_url=sim.base_url,
            journal=db,
            limits=nb.Limits(concurrent_tasks=1),
        ) as b:
            result = await asyncio.wait_for(b.generate("a dog"), timeout=10)
    assert result.task_id
    assert sim.stats.creates == 2


async def test_an_old_journal_without_accounts_opens_and_is_migrated(tmp_path: Path) -> None:
    """A journal written before rows named their account opens; its rows stay its provider's
    (any key resumes them) and new rows record the key's fingerprint."""
    db = tmp_path / "old.db"
    old = sqlite3.connect(db)
    old.executescript(
        """
        CREATE TABLE tasks (key TEXT PRIMARY KEY, provider TEXT NOT NULL, request TEXT NOT NULL,
            state TEXT NOT NULL, task_id TEXT, model TEXT, urls TEXT, error TEXT,
            updated_at REAL NOT NULL);
        CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        """
    )
    request = json.dumps({"prompt": "a cat", "model": "nano-banana-2"})
    old.execute(
        "INSERT INTO tasks VALUES ('line-1', 'crun', ?, 'succeeded', 't-1', 'google/nano-banana-2',"
        " '[\"https://example.invalid/a.png\"]', NULL, 1.0)",
        (request,),
    )
    old.commit()
    old.close()
    async with (
        Simulator("crun", latency=FAST) as sim,
        nb.Client("crun", api_key=sim.api_key, base_url=sim.base_url, journal=db) as c,
    ):
        done = await (await c.submit(nb.ImageRequest(prompt="a cat"), key="line-1"))
        await c.generate("a dog", timeout=10)
    assert done.task_id == "t-1"
    assert sim.stats.requests["create"] == 1  # only the new prompt
    entries = {e.key: e for e in await _entries(db)}  # type: ignore[attr-defined]
    assert entries["line-1"].account is None
    (new,) = (e for k, e in entries.items() if k != "line-1")
    assert new.account == key_fingerprint(sim.api_key)


def test_cli_resume_with_another_key_checks_nothing_then_the_holder_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`nanobanana resume` with another key reports each other-account line, sends nothing
    for it and exits 1; with the holder's key it resumes the same task."""
    sim = Simulator("apixo", latency=Latency(median=0.5, sigma=0.1))
    sim.start_in_thread()
    db = tmp_path / "out" / "journal.db"
    first_key = sim.api_key

    async def submit() -> str:
        async with nb.Client("apixo", api_key=first_key, base_url=sim.base_url, journal=db) as c:
            task = await c.submit(nb.ImageRequest(prompt="a cat"), key="line-1-abc")
        return task.id

    try:
        task_id = asyncio.run(submit())
        monkeypatch.setenv("NANOBANANA_BASE_URL", sim.base_url)
        monkeypatch.setenv("NANOBANANA_API_KEY", OTHER_KEY)
        checks = sim.stats.checks[task_id]
        sim.api_key = OTHER_KEY
        assert main(["resume", "--journal", str(db)]) == 1
        out = capsys.readouterr().out
        assert "line 1: not resumed" in out
        assert key_fingerprint(first_key) in out
        assert first_key not in out
        assert sim.stats.checks[task_id] == checks
        sim.api_key = first_key
        monkeypatch.setenv("NANOBANANA_API_KEY", first_key)
        assert main(["resume", "--journal", str(db)]) == 0
        rows = [json.loads(r) for r in (db.parent / "results.jsonl").read_text().splitlines()]
    finally:
        sim.stop_thread()
    assert [(r["line"], r["status"], r["task_id"]) for r in rows] == [(1, "succeeded", task_id)]
    assert sim.stats.creates == 1
