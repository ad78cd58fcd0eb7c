"""The journal: an append-and-update record in SQLite that lets a crashed batch resume without
paying twice (does file I/O, always off the event loop).

Each request is keyed (by the caller, or by a hash of the request). Before a submit is sent the
key is recorded as an *intent*; the moment the provider accepts, its task id and model are
recorded; the end state and image URLs follow. Each row names the account that holds its task:
the provider and the key's fingerprint (never the key), so a rerun with another key neither
polls that task with the wrong key nor pays for it again. Every write is committed
(``synchronous=FULL``) before the call that made it returns, so a kill at any point leaves
either no row, an intent (outcome unknown: reported, never resubmitted silently) or a task id
(re-attached).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final, Literal

import anyio
import anyio.to_thread
import attrs

from ._errors import ConfigurationError, DuplicateSubmitError
from ._models import ImageRequest, TaskRef
from ._redact import without_userinfo

if sys.platform != "win32":
    import fcntl

# Journal files this process holds the lock of: (st_dev, st_ino) -> (the locked descriptor,
# users, the resolved path it was opened by). The lock keeps other processes out; Journals of
# one process may share a file (a reader beside a client).
_HELD: dict[tuple[int, int], tuple[int, int, str]] = {}
_HELD_LOCK = threading.Lock()

State = Literal["intent", "submitted", "succeeded", "failed", "unknown"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS tasks (
    key TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    request TEXT NOT NULL,
    state TEXT NOT NULL,
    task_id TEXT,
    model TEXT,
    urls TEXT,
    error TEXT,
    updated_at REAL NOT NULL,
    account TEXT
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    url TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
"""


@attrs.frozen(kw_only=True)
class JournalEntry:
    """One request as the journal knows it."""

    key: str
    provider: str
    request: ImageRequest | None
    """None when the stored request no longer reads (a rule got stricter since it was
    written, or the row was damaged): ``request_error`` says why; a task id and model still
    resume it."""
    state: State
    task_id: str | None
    model: str | None
    urls: tuple[str, ...]
    error: str | None
    updated_at: float = 0.0
    account: str | None = None
    """The fingerprint of the key that submitted it (``key_fingerprint``); None in rows
    written before journals recorded it."""
    request_error: str | None = None
    """Why ``request`` is None."""

    def held_by(self, provider: str, account: str) -> bool:
        """Whether this row's task belongs to the account ``provider`` + ``account`` (a key
        fingerprint). A row from before accounts were recorded belongs to its provider's."""
        return self.provider == provider and self.account in (None, account)


_COLUMNS: Final = "key, provider, request, state, task_id, model, urls, error, updated_at, account"


def request_key(provider: str, request: ImageRequest) -> str:
    """A stable key for a request: SHA-256 of the provider and its fields (callback excluded)."""
    fields = request_to_json(request)
    return hashlib.sha256(json.dumps([provider, fields], sort_keys=True).encode()).hexdigest()


def request_to_json(request: ImageRequest) -> dict[str, object]:
    """The request's fields as JSON values, without the per-submit callback URL."""
    data = attrs.asdict(request)
    data.pop("callback_url", None)
    data["image_urls"] = list(request.image_urls)
    data["provider_options"] = dict(request.provider_options)
    for name in ("num_images", "watermark"):
        if data[name] is None:
            # Absent as before these fields existed: an old journal's keys stay valid.
            del data[name]
    if not data["provider_options"]:
        del data["provider_options"]
    return data


class Journal:
    """SQLite-backed journal; one writer thread, so calls never block the event loop.

    One process at a time: a second one gets ``ConfigurationError`` ("in use by PID n").

    Args:
        path: the database file (created with its folder if missing).
        wall_clock: stamps rows (unix seconds).
        provider: when given, the journal records it (and ``base_url``) on first use and
            refuses to be used for another provider or URL: its task ids mean nothing there.
        base_url: the provider's base URL, recorded with ``provider``.
        create: False to refuse a missing file instead of creating it.

    Raises (on first use):
        ConfigurationError: the file is not a journal or is corrupt, is used by another
            process, belongs to another provider, or is missing and ``create`` is False.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        wall_clock: Callable[[], float] = time.time,
        provider: str | None = None,
        base_url: str | None = None,
        create: bool = True,
    ) -> None:
        self.path = Path(path)
        self._wall_clock = wall_clock
        self._owner = (provider, base_url)
        self._create = create
        self._lock_file: tuple[int, int] | None = None
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._limiter = anyio.CapacityLimiter(1)

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            if self.path.is_dir():
                raise ConfigurationError(f"{self.path}: a folder, not a journal")
            if not self._create and not self.path.is_file():
                raise ConfigurationError(f"{self.path}: no such journal")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._hold_file_lock()
                db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            except (OSError, sqlite3.Error) as exc:
                self._unlock()
                reason = exc.strerror if isinstance(exc, OSError) else str(exc)
                raise ConfigurationError(f"{self.path}: cannot open journal ({reason})") from None
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.executescript(_SCHEMA)
                _migrate(db)
                self._check_owner(db)
            except sqlite3.DatabaseError as exc:
                db.close()
                self._unlock()
                # OperationalError: a full disk, a read-only folder; the file itself is fine.
                problem = (
                    "cannot be written"
                    if isinstance(exc, sqlite3.OperationalError)
                    else "not a nanobanana journal, or corrupt"
                )
                raise ConfigurationError(f"{self.path}: {problem} ({exc})") from None
            except ConfigurationError:
                db.close()
                self._unlock()
                raise
            self._db = db
        return self._db

    def _hold_file_lock(self) -> None:
        # Held for the journal's life: two processes writing one journal would each trust
        # the other's intents as their own. The lock is on the database file itself (an
        # flock, which SQLite's own fcntl locks do not touch on Linux), so a second name for
        # it (a symlink, a hard link, a bind mount) meets the same lock.
        if sys.platform == "win32":  # pragma: no cover - no cross-process lock there
            return
        name = str(self.path.resolve())
        with _HELD_LOCK:
            # Looked up by stat, not by opening: closing any descriptor of a file drops the
            # fcntl locks SQLite holds on it in this process.
            with contextlib.suppress(FileNotFoundError):
                info = os.stat(self.path)
                held = _HELD.get((info.st_dev, info.st_ino))
                if held is not None:
                    if held[2] != name:
                        raise ConfigurationError(
                            f"journal {self.path} is also open here as {held[2]} (a hard "
                            "link): SQLite keeps its log by name, so open it by one name"
                        )
                    _HELD[(info.st_dev, info.st_ino)] = (held[0], held[1] + 1, name)
                    self._lock_file = (info.st_dev, info.st_ino)
                    return
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                info = os.fstat(fd)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise ConfigurationError(
                        f"journal {self.path} in use by {self._holder()}"
                    ) from None
                if info.st_nlink > 1:
                    # SQLite's write-ahead log is named after the path: under two names a
                    # killed run's last writes (paid task ids) are invisible to the other.
                    raise ConfigurationError(
                        f"journal {self.path} has {info.st_nlink} hard links: SQLite keeps "
                        "its log by name, so keep one (a symlink is fine)"
                    )
            except BaseException:
                os.close(fd)  # closing releases the flock
                raise
            with contextlib.suppress(OSError):
                # Only for the message another process shows: the lock is the flock.
                self._pid_file().write_text(str(os.getpid()))
            _HELD[(info.st_dev, info.st_ino)] = (fd, 1, name)
            self._lock_file = (info.st_dev, info.st_ino)

    def _pid_file(self) -> Path:
        # Beside the real file: a symlinked opener finds the holder's PID there.
        real = self.path.resolve()
        return real.with_name(real.name + ".lock")

    def _holder(self) -> str:
        try:
            pid = self._pid_file().read_text()[:32].strip()
        except (OSError, UnicodeDecodeError):
            pid = ""
        return f"PID {pid}" if pid.isdigit() else "another process"

    def _unlock(self) -> None:
        if self._lock_file is None:
            return
        inode, self._lock_file = self._lock_file, None
        with _HELD_LOCK:
            fd, users, name = _HELD.pop(inode)
            if users > 1:
                _HELD[inode] = (fd, users - 1, name)
                return
            with contextlib.suppress(OSError):
                self._pid_file().unlink(missing_ok=True)
            os.close(fd)  # closing releases the flock

    def _check_owner(self, db: sqlite3.Connection) -> None:
        _scrub_owner_url(db)
        provider, base_url = self._owner
        if provider is None:
            return
        # Stored and compared without a user name or password: clients refuse them now, and a
        # journal whose URL held one must still open for the same host.
        base_url = without_userinfo(base_url) if base_url is not None else None
        stored = dict(db.execute("SELECT name, value FROM meta").fetchall())
        if "provider" not in stored:
            rows = [("provider", provider), ("base_url", base_url or "")]
            db.executemany("INSERT INTO meta (name, value) VALUES (?, ?)", rows)
            return
        if (stored.get("provider"), stored.get("base_url") or None) != (provider, base_url):
            where = stored.get("base_url") or "its default URL"
            raise ConfigurationError(
                f"journal {self.path} belongs to {stored.get('provider')} at {where}, "
                f"not {provider} at {base_url or 'its default URL'}"
            )

    async def owner(self) -> tuple[str | None, str | None]:
        """The provider and base URL recorded in the journal (None when not recorded)."""
        stored = await self._run(lambda db: dict(db.execute("SELECT name, value FROM meta")))
        assert isinstance(stored, dict)
        return stored.get("provider"), stored.get("base_url") or None

    async def _run(self, fn: Callable[[sqlite3.Connection], object]) -> object:
        def call() -> object:
            with self._lock:
                return fn(self._connect())

        return await anyio.to_thread.run_sync(call, limiter=self._limiter)

    async def get(self, key: str) -> JournalEntry | None:
        """The entry for ``key``, if any."""
        row = await self._run(
            lambda db: db.execute(
                f"SELECT {_COLUMNS} FROM tasks WHERE key = ?",  # noqa: S608  our columns
                (key,),
            ).fetchone()
        )
        return _entry(row, self.path) if row is not None else None

    async def entries(
        self, *, unreadable: list[DamagedRowError] | None = None
    ) -> list[JournalEntry]:
        """Every entry, in key order.

        A row whose request no longer reads is an entry with ``request`` None (its task id
        still resumes it). A row that does not read otherwise (its state, URLs or id) raises
        ``DamagedRowError`` (a ``ConfigurationError``), unless ``unreadable`` is given: then
        it is skipped and its error added there, and one damaged row does not hide the others.
        """
        rows = await self._run(
            lambda db: db.execute(
                f"SELECT {_COLUMNS} FROM tasks ORDER BY key"  # noqa: S608  our columns
            ).fetchall()
        )
        assert isinstance(rows, list)
        found: list[JournalEntry] = []
        for row in rows:
            try:
                found.append(_entry(row, self.path))
            except DamagedRowError as exc:
                if unreadable is None:
                    raise
                unreadable.append(exc)
        return found

    async def record_intent(
        self, key: str, provider: str, request: ImageRequest, *, account: str | None = None
    ) -> None:
        """Record that ``request`` is about to be submitted (durable before returning).

        Args:
            key: the request's journal key.
            provider: the provider it goes to.
            request: what is submitted.
            account: the fingerprint of the key it is submitted with (``key_fingerprint``).

        Raises:
            DuplicateSubmitError: the journal already holds a row of ``key``: another client
                sharing this file wrote it since this one looked (nothing is sent then).
        """
        payload = json.dumps(request_to_json(request), sort_keys=True)
        now = self._wall_clock()
        try:
            await self._run(
                lambda db: db.execute(
                    "INSERT INTO tasks (key, provider, request, state, updated_at, account) "
                    "VALUES (?, ?, ?, 'intent', ?, ?)",
                    (key, provider, payload, now, account),
                )
            )
        except sqlite3.IntegrityError:
            # The key is the only constraint, and a client writes it only after finding no
            # row: another client of this process (the file lock keeps other processes out)
            # wrote it in between, and is sending it.
            raise DuplicateSubmitError(
                f"the journal {self.path} already holds a submit of this request (key "
                f"{key[:16]}…) in flight from another client sharing the journal: nothing "
                "was sent by this one, so it is not paid twice; await the other client's "
                "task (a later submit of this request re-attaches it once it is accepted)",
                key=key,
                path=str(self.path),
            ) from None

    async def record_submitted(self, key: str, task_id: str, model: str) -> None:
        """Record the provider's task id the moment it accepted the submit."""
        await self._update(key, state="submitted", task_id=task_id, model=model)

    async def record_end(
        self,
        key: str,
        state: State,
        *,
        urls: tuple[str, ...] = (),
        error: str | None = None,
    ) -> None:
        """Record a final state (succeeded, failed, or unknown outcome)."""
        await self._update(key, state=state, urls=json.dumps(list(urls)), error=error)

    async def forget(self, key: str) -> None:
        """Drop an intent whose submit surely never reached the provider."""
        await self._run(
            lambda db: db.execute("DELETE FROM tasks WHERE key = ? AND state = 'intent'", (key,))
        )

    async def drop_unknown(self, keys: list[str]) -> int:
        """Forget the submits of unknown outcome among ``keys`` so they can be sent again
        (the caller accepts paying twice); returns how many were dropped."""

        def drop(db: sqlite3.Connection) -> int:
            count = 0
            for key in keys:
                cursor = db.execute(
                    "DELETE FROM tasks WHERE key = ? AND state IN ('intent', 'unknown')", (key,)
                )
                count += cursor.rowcount
            return count

        dropped = await self._run(drop)
        assert isinstance(dropped, int)
        return dropped

    async def record_file(
        self, path: Path, *, task_id: str, url: str, stamp: tuple[int, int]
    ) -> None:
        """Record that the image at ``url`` of task ``task_id`` was written to ``path``, whose
        size and modification time (ns) are ``stamp``."""
        now = self._wall_clock()
        await self._run(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO files (path, task_id, url, size, mtime_ns, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (str(path.absolute()), task_id, url, *stamp, now),
            )
        )

    async def written_file(self, task_id: str, url: str) -> tuple[Path, tuple[int, int]] | None:
        """The file (and its size and modification time) the image at ``url`` of ``task_id``
        was last written to, if no other image was written there since."""
        row = await self._run(
            lambda db: db.execute(
                "SELECT path, size, mtime_ns FROM files WHERE task_id = ? AND url = ? "
                "ORDER BY updated_at DESC LIMIT 1",
                (task_id, url),
            ).fetchone()
        )
        if row is None:
            return None
        assert isinstance(row, tuple)
        return Path(row[0]), (int(row[1]), int(row[2]))

    async def note(self, name: str, value: str) -> None:
        """Record a setting of the run that wrote this journal (e.g. the output folder)."""
        await self._run(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (f"note.{name}", value)
            )
        )

    async def noted(self, name: str) -> str | None:
        """A setting recorded by :meth:`note`, None when none was."""
        row = await self._run(
            lambda db: db.execute(
                "SELECT value FROM meta WHERE name = ?", (f"note.{name}",)
            ).fetchone()
        )
        return row[0] if isinstance(row, tuple) else None

    async def _update(self, key: str, **values: object) -> None:
        values["updated_at"] = self._wall_clock()
        columns = ", ".join(f"{name} = ?" for name in values)
        params = (*values.values(), key)
        await self._run(lambda db: db.execute(f"UPDATE tasks SET {columns} WHERE key = ?", params))  # noqa: S608  column names are ours

    async def aclose(self) -> None:
        """Close the database."""
        if self._db is not None:
            db, self._db = self._db, None

            def close() -> None:
                # Under the lock: a write whose caller was cancelled (Ctrl-C; anyio only
                # cancels the await) still runs in its thread, and may be a paid task's id.
                with self._lock:
                    db.close()

            await anyio.to_thread.run_sync(close, limiter=self._limiter)
        self._unlock()


def _migrate(db: sqlite3.Connection) -> None:
    # Journals written before rows named their account lack the column; their rows keep NULL
    # (the journal's provider, key unknown) and stay readable by older versions, which name
    # their columns in every statement.
    columns = {row[1] for row in db.execute("PRAGMA table_info(tasks)")}
    if "account" not in columns:
        db.execute("ALTER TABLE tasks ADD COLUMN account TEXT")


def _scrub_owner_url(db: sqlite3.Connection) -> None:
    # Journals written before clients refused one hold a crun base URL as given, a password
    # in it included: it leaves the file on the first open. secure_delete zeroes the old
    # row's bytes in its page (the default of some SQLite builds only), and the checkpoint
    # copies that page over the database file now, not at close, and empties the log.
    row = db.execute("SELECT value FROM meta WHERE name = 'base_url'").fetchone()
    if row is None or without_userinfo(row[0]) == row[0]:
        return
    db.execute("PRAGMA secure_delete=ON")
    db.execute("UPDATE meta SET value = ? WHERE name = 'base_url'", (without_userinfo(row[0]),))
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


class DamagedRowError(ConfigurationError):
    """A journal row that does not read: ``key`` is its key (as text), ``why`` every problem."""

    def __init__(self, path: Path, key: object, why: str) -> None:
        super().__init__(
            f"journal {path}: the row of key {key!r} cannot be read ({why}): the journal is damaged"
        )
        self.key = str(key)
        self.why = why


def _entry(row: object, path: Path) -> JournalEntry:
    # The one reading of a row, through cattrs like every other untyped input (loaded on the
    # first read: opening a client stays cheap). A row that does not read is a damaged
    # journal: its paid task id must not vanish into a raw exception.
    from ._structure import RecordError, structure_record

    assert isinstance(row, tuple)
    data = dict(zip(_COLUMNS.split(", "), row, strict=True))
    # The request apart: it is checked by today's rules, which may be stricter than those
    # it was written under, and the row's task id resumes it without it.
    stored, data["request"] = data["request"], None
    try:
        data["urls"] = json.loads(data["urls"]) if data["urls"] else []
        entry = structure_record(data, JournalEntry)
    except (ValueError, RecursionError) as exc:
        why = "; ".join(exc.errors) if isinstance(exc, RecordError) else f"not JSON ({exc})"
        raise DamagedRowError(path, data["key"], why) from None
    try:
        request = structure_record({"request": json.loads(stored)}, _Request).request
    except (ValueError, TypeError, RecursionError) as exc:
        why = "; ".join(exc.errors) if isinstance(exc, RecordError) else f"not JSON ({exc})"
        return attrs.evolve(entry, request_error=why)
    return attrs.evolve(entry, request=request)


@attrs.frozen
class _Request:
    # A row's request read on its own, its problems named "@ $.request.…" as in a row.
    request: ImageRequest


class Intent:
    """The journal's view of one submit: intent before each send, cleared after a refusal.

    A refused attempt (a 429, crun's 455, nothing sent) created nothing, so its intent is
    cleared before the wait and written again right before the next send: a kill during the
    wait never leaves the request looking "of unknown outcome".
    """

    def __init__(
        self,
        journal: Journal,
        key: str,
        provider: str,
        request: ImageRequest,
        *,
        account: str | None = None,
    ) -> None:
        self.key = key
        self.path = journal.path
        self._journal = journal
        self._provider = provider
        self._request = request
        self._account = account
        self._written = False

    async def write(self) -> None:
        """Record the intent (right before a send)."""
        if not self._written:
            await self._journal.record_intent(
                self.key, self._provider, self._request, account=self._account
            )
            self._written = True

    async def clear(self) -> None:
        """Drop the intent: the attempt surely created nothing."""
        if self._written:
            await self._journal.forget(self.key)
            self._written = False

    async def submitted(self, ref: TaskRef) -> None:
        """Record the task id the provider gave."""
        await self._journal.record_submitted(self.key, ref.task_id, ref.model)

    async def failed(self, task_id: str, model: str, error: str) -> None:
        """Record a task the create's answer already reported failed."""
        await self._journal.record_submitted(self.key, task_id, model)
        await self._journal.record_end(self.key, "failed", error=error)

    async def unknown(self, error: str) -> None:
        """Record that the submit's outcome is unknown."""
        if self._written:
            await self._journal.record_end(self.key, "unknown", error=error)
