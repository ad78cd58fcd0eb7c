"""The journal file: typed errors naming it, one process at a time, one provider per journal."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import anyio.to_thread
import pytest

import nanobanana_async as nb
from nanobanana_async import _journal as journal_module
from nanobanana_async._journal import Journal

REQUEST = nb.ImageRequest(prompt="a cat")


async def _touch(journal: Journal) -> None:
    try:
        await journal.entries()
    finally:
        await journal.aclose()


@pytest.mark.parametrize(
    "content",
    [b"a cat\na dog\n", b"SQLite format 3\x00" + b"\x00" * 40],
    ids=["text file", "truncated database"],
)
async def test_a_file_that_is_not_a_journal_is_a_typed_error(
    tmp_path: Path, content: bytes
) -> None:
    """A prompts file or a corrupt journal: ConfigurationError naming it, not sqlite3's."""
    path = tmp_path / "prompts.txt"
    path.write_bytes(content)
    with pytest.raises(nb.ConfigurationError, match=r"prompts\.txt: not a nanobanana journal"):
        await _touch(Journal(path))
    assert path.read_bytes() == content


async def test_a_missing_journal_is_refused_when_not_creating(tmp_path: Path) -> None:
    """resume on a missing file must not create an empty database."""
    path = tmp_path / "nonexistent.db"
    with pytest.raises(nb.ConfigurationError, match="no such journal"):
        await _touch(Journal(path, create=False))
    assert not path.exists()


async def test_a_journal_in_use_by_another_process_is_refused(tmp_path: Path) -> None:
    """Another process holding the lock: 'journal ... in use by PID n', nothing written."""
    path = tmp_path / "journal.db"
    other = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as another process would
        (tmp_path / "journal.db.lock").write_text("4242")
        with pytest.raises(nb.ConfigurationError, match=r"in use by PID 4242"):
            await _touch(Journal(path))
    finally:
        os.close(other)
    await _touch(Journal(path))  # free again once the other process is gone


@pytest.mark.parametrize("second_name", ["hard link", "symlink"])
async def test_a_journal_under_a_second_name_is_locked_by_its_inode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, second_name: str
) -> None:
    """A second process opening the journal a batch holds, by a hard link or a symlink, is
    refused ('in use'): the lock is the file's, not its name's (20 prompts were paid twice)."""
    path = tmp_path / "out" / "journal.db"
    holder = Journal(path)
    await holder.record_intent("k", "apixo", REQUEST)
    other = tmp_path / "other.db"
    if second_name == "hard link":
        os.link(path, other)
    else:
        other.symlink_to(path)
    # Another process: it shares none of this one's held locks (the flock is per open file).
    monkeypatch.setattr(journal_module, "_HELD", {})
    try:
        with pytest.raises(
            nb.ConfigurationError, match=rf"other\.db in use by (PID {os.getpid()}|another process)"
        ):
            await _touch(Journal(other))
    finally:
        monkeypatch.undo()
        await holder.aclose()


async def test_a_hard_linked_journal_is_refused(tmp_path: Path) -> None:
    """SQLite keeps its write-ahead log by name: a journal with two names would let a killed
    run's last writes (paid task ids) vanish under the other name, so it is refused."""
    path = tmp_path / "journal.db"
    await _touch(Journal(path))
    os.link(path, tmp_path / "copy.db")
    with pytest.raises(nb.ConfigurationError, match="has 2 hard links"):
        await _touch(Journal(path))
    (tmp_path / "copy.db").unlink()
    await _touch(Journal(path))  # one name again: usable


async def test_journals_of_one_process_share_the_lock(tmp_path: Path) -> None:
    """A reader beside a client in the same process is not 'another process'."""
    path = tmp_path / "journal.db"
    first, second = Journal(path), Journal(path)
    await first.record_intent("k", "apixo", REQUEST)
    assert [e.key for e in await second.entries()] == ["k"]
    await second.aclose()
    await first.aclose()


async def test_a_journal_refuses_another_provider(tmp_path: Path) -> None:
    """Task ids of one provider mean nothing to another: the journal says whose it is."""
    path = tmp_path / "journal.db"
    await _touch(Journal(path, provider="apixo", base_url="https://api.apixo.test"))
    with pytest.raises(nb.ConfigurationError, match=r"belongs to apixo at https://api\.apixo"):
        await _touch(Journal(path, provider="crun", base_url="https://crun.test"))
    journal = Journal(path, provider="apixo", base_url="https://api.apixo.test")
    assert await journal.owner() == ("apixo", "https://api.apixo.test")
    await journal.aclose()


async def test_a_journal_records_and_compares_a_base_url_without_its_password(
    tmp_path: Path,
) -> None:
    """A URL's user name and password are neither stored nor compared: the same host opens the
    journal with or without them, and owner() (what a rerun reconnects to) holds none."""
    path = tmp_path / "journal.db"
    await _touch(Journal(path, provider="crun", base_url="https://u:hunter2@crun.test/x"))
    assert b"hunter2" not in path.read_bytes()
    journal = Journal(path, provider="crun", base_url="https://crun.test/x")
    assert await journal.owner() == ("crun", "https://crun.test/x")
    await journal.aclose()
    with pytest.raises(nb.ConfigurationError, match=r"to crun at https://crun\.test/x,") as e:
        await _touch(Journal(path, provider="crun", base_url="https://u:hunter2@other.test"))
    assert "hunter2" not in str(e.value)


async def test_a_second_intent_for_one_key_is_a_duplicate_submit(tmp_path: Path) -> None:
    """Two Journals of one file (clients on two event loops, which cannot wait for each
    other): the second intent of a key is DuplicateSubmitError naming the file and the key,
    and the first one's row is left as it was."""
    path = tmp_path / "journal.db"
    first, second = Journal(path), Journal(path)
    await first.record_intent("k", "apixo", REQUEST)
    with pytest.raises(nb.DuplicateSubmitError, match="in flight from another client") as e:
        await second.record_intent("k", "apixo", REQUEST)
    assert (e.value.key, e.value.path) == ("k", str(path))
    assert [(x.key, x.state) for x in await second.entries()] == [("k", "intent")]
    await second.aclose()
    await first.aclose()


async def test_drop_unknown_forgets_only_unknown_submits(tmp_path: Path) -> None:
    """--resubmit-unknown drops intents and unknowns, never a row with a task id."""
    journal = Journal(tmp_path / "journal.db")
    for key in ("intent", "unknown", "submitted"):
        await journal.record_intent(key, "apixo", REQUEST)
    await journal.record_end("unknown", "unknown", error="timeout")
    await journal.record_submitted("submitted", "task-1", "nano-banana-2")
    assert await journal.drop_unknown(["intent", "unknown", "submitted", "absent"]) == 2
    assert [e.key for e in await journal.entries()] == ["submitted"]
    await journal.aclose()


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p.mkdir(), "a folder, not a journal"),
        (lambda p: p.parent.rmdir() or p.parent.touch(), "cannot open journal"),
    ],
)
async def test_a_journal_path_that_cannot_be_opened_is_a_typed_error(
    tmp_path: Path, make: Callable[[Path], object], expected: str
) -> None:
    """A folder, or a path under a file, is a ConfigurationError naming it, not sqlite's."""
    path = tmp_path / "sub" / "journal.db"
    path.parent.mkdir()
    make(path)
    journal = Journal(path)
    with pytest.raises(nb.ConfigurationError, match=expected):
        await journal.entries()
    await journal.aclose()


async def test_aclose_waits_for_a_write_whose_caller_was_cancelled(tmp_path: Path) -> None:
    """Ctrl-C cancels a caller while its write (a paid task's id) runs in the journal's
    thread: the write still lands before the database closes."""
    path = tmp_path / "journal.db"
    journal = Journal(path, provider="apixo")
    await journal.record_intent("k", "apixo", nb.ImageRequest(prompt="a cat"))
    started, go = threading.Event(), threading.Event()

    def slow_write(db: sqlite3.Connection) -> None:
        started.set()
        go.wait(10)
        db.execute("UPDATE tasks SET state = 'submitted', task_id = 't1', model = 'm' ")

    write = asyncio.ensure_future(journal._run(slow_write))
    await anyio.to_thread.run_sync(started.wait, 10)
    write.cancel()  # anyio's worker thread goes on: only the await is cancelled
    closing = asyncio.ensure_future(journal.aclose())
    await asyncio.wait([closing], timeout=0.05)  # a journal that does not wait closes now
    go.set()
    await closing
    again = Journal(path, create=False)
    entry = await again.get("k")
    await again.aclose()
    assert entry is not None
    assert entry.task_id == "t1"


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("state", "'done'", "'done' is not one of 'intent', 'submitted', "),
        ("urls", "'[\"https://x.test/a.png\"'", "not JSON"),
        ("urls", """'"https://x.test/a.png"'""", "expected a list of text @ $.urls"),
        ("task_id", "X'41'", "expected text, got bytes @ $.task_id"),
    ],
)
async def test_a_damaged_row_is_a_typed_error_naming_the_journal(
    tmp_path: Path, column: str, value: str, problem: str
) -> None:
    """Rows are read through cattrs: a damaged one is a ConfigurationError naming the file,
    the row and the field, never a raw JSONDecodeError or an unknown state taken as running."""
    path = tmp_path / "journal.db"
    journal = Journal(path)
    await journal.record_intent("line-1-x", "apixo", REQUEST)
    await journal.record_submitted("line-1-x", "t1", "nano-banana-2")
    await journal.record_end("line-1-x", "succeeded", urls=("https://x.test/a.png",))
    await journal.aclose()
    with sqlite3.connect(path) as db:
        db.execute(f"UPDATE tasks SET {column} = {value}")  # noqa: S608  the test's own values
    db.close()
    with pytest.raises(nb.ConfigurationError) as info:
        await _touch(Journal(path))
    message = str(info.value)
    assert message.startswith(f"journal {path}: the row of key 'line-1-x' cannot be read (")
    assert problem in message


async def _damage(path: Path, keys: list[str], sql: str) -> None:
    journal = Journal(path)
    for n, key in enumerate(keys):
        await journal.record_intent(key, "apixo", nb.ImageRequest(prompt=f"prompt {n}"))
        await journal.record_submitted(key, f"t{n}", "nano-banana-2")
    await journal.aclose()
    with sqlite3.connect(path) as db:
        db.execute(sql)
    db.close()


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("""'{"prompt": ""}'""", "prompt must be a non-empty string @ $.request.prompt"),
        ("""'{"prompt": "a cat", "size": 2}'""", "unknown field (known: "),
        ("'{\"prompt\": '", "not JSON"),
    ],
)
async def test_a_row_whose_request_no_longer_reads_keeps_its_task(
    tmp_path: Path, value: str, problem: str
) -> None:
    """A request refused by today's rules (a rule got stricter) leaves its row readable:
    the task id and model resume it, the request is None and ``request_error`` says why."""
    path = tmp_path / "journal.db"
    damage = f"UPDATE tasks SET request = {value} WHERE key = 'line-1-x'"  # noqa: S608  ours
    await _damage(path, ["line-1-x", "line-2-y"], damage)
    journal = Journal(path)
    first, second = await journal.entries()
    again = await journal.get("line-1-x")
    await journal.aclose()
    assert (first.key, first.task_id, first.model, first.request) == (
        "line-1-x",
        "t0",
        "nano-banana-2",
        None,
    )
    assert first.request_error is not None
    assert problem in first.request_error
    assert again == first
    assert second.request == nb.ImageRequest(prompt="prompt 1")
    assert second.request_error is None


async def test_one_damaged_row_is_reported_and_the_others_still_read(tmp_path: Path) -> None:
    """With ``unreadable``, a row that does not read is skipped and described (key and why);
    every other row is returned; ``get`` of that key still raises (never None: a None would
    submit it again)."""
    path = tmp_path / "journal.db"
    keys = ["line-1-a", "line-2-b", "line-3-c"]
    await _damage(path, keys, "UPDATE tasks SET state = 'done' WHERE key = 'line-2-b'")
    journal = Journal(path)
    unreadable: list[journal_module.DamagedRowError] = []
    try:
        entries = await journal.entries(unreadable=unreadable)
        with pytest.raises(nb.ConfigurationError, match="line-2-b"):
            await journal.get("line-2-b")
    finally:
        await journal.aclose()
    assert [e.key for e in entries] == ["line-1-a", "line-3-c"]
    assert [(d.key, d.why) for d in unreadable] == [
        (
            "line-2-b",
            "'done' is not one of 'intent', 'submitted', 'succeeded', 'failed', "
            "'unknown' @ $.state",
        )
    ]


async def test_rows_read_back_as_written(tmp_path: Path) -> None:
    """Every field of a row comes back with its type: URLs a tuple, the stamp a float."""
    journal = Journal(tmp_path / "journal.db", wall_clock=lambda: 1700000000)
    request = nb.ImageRequest(prompt="a cat", num_images=2, provider_options={"provider": "value"})
    await journal.record_intent("k", "apixo", request)
    await journal.record_submitted("k", "t1", "nano-banana-2")
    await journal.record_end("k", "succeeded", urls=("https://x.test/a.png",))
    (entry,) = await journal.entries()
    await journal.aclose()
    assert entry.request == request
    assert (entry.state, entry.task_id, entry.urls) == (
        "succeeded",
        "t1",
        ("https://x.test/a.png",),
    )
    assert entry.updated_at == 1700000000.0
    assert isinstance(entry.updated_at, float)
