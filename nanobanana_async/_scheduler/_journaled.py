"""The journal's side of the submit pipeline: lookups, slots held for a rerun, end records
(does I/O through the journal)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import hashlib
import json
import logging
import math
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Final

from .._config import Limits
from .._errors import (
    ConfigurationError,
    GenerationFailedError,
    SubmitOutcomeUnknownError,
    WrongAccountError,
)
from .._journal import Journal, JournalEntry
from .._models import ImageRequest, ImageResult, TaskRef
from .._redact import key_fingerprint
from .._settings import Settings
from .._task import Task
from ._ledger import Lease

if TYPE_CHECKING:
    from ._runner import Scheduler
    from ._submit import Submitter

_log = logging.getLogger("nanobanana_async")

WINDOW_EVERY: Final = 1.0
"""Seconds between two writes of the account's recent sends to the journal (while it sends)."""
_BUCKET: Final = 0.1  # seconds: sends are remembered per tenth of a second, rounded up
# A killed run may have sent for this long after its last write (one write interval, plus a
# journal thread busy with other writes): a rerun counts it as sending at its pace until then.
_UNWRITTEN: Final = WINDOW_EVERY + 0.5
_MOST_SENDS: Final = 1_000_000  # more in one record is damage (each becomes a list entry)

# The submits in flight through any client of this process, by the journal file (resolved)
# and the request's key, with the scheduler (loop and clock) they run on: the future settles
# once that submit's row says what became of it. Process-wide because two clients of one
# journal each have their own Journal connection and lookups, and the rows, written in a
# thread, cannot tell a second client whether the first is about to write its task id.
_IN_FLIGHT: dict[tuple[str, str], tuple[Scheduler, asyncio.Future[Task]]] = {}


class JournalHooks:
    """What the submit pipeline asks of a client's journal, and the end records it writes."""

    def __init__(self, journal: Journal, *, provider: str, account: str) -> None:
        self.journal = journal
        self.provider = provider
        self.account = account
        """The fingerprint of the client's key: the account its rows name."""
        self._writes: set[asyncio.Task[None]] = set()
        self._leases: dict[str, Lease] = {}
        self._window_writer: asyncio.Task[None] | None = None
        self._submitter: Submitter | None = None
        self._where = str(journal.path.resolve())

    @classmethod
    def open(cls, path: str | Path, settings: Settings) -> JournalHooks:
        """The hooks of the journal at ``path``, for a client with ``settings``."""
        journal = Journal(
            path,
            wall_clock=settings.wall_clock,
            provider=settings.provider,
            base_url=settings.journal_base_url,
        )
        key = settings.key.reveal() if settings.key is not None else None
        return cls(journal, provider=settings.provider, account=key_fingerprint(key))

    async def after_others(
        self, key: str, mine: asyncio.Future[Task], scheduler: Scheduler
    ) -> None:
        """Wait until no other client of this journal on ``scheduler`` is submitting ``key``,
        then mark this client's submit of it (settling ``mine``) as the one in flight.

        Called before the journal lookup: the caller then reads the row the other client's
        submit left, as a rerun does (its task re-attached, an outcome-unknown error when its
        outcome is unknown, or no row when nothing was created: then it submits). Bounded by
        the other submit itself (its slot wait, its sends and their timeouts, its client's
        close), which settles however it ends; cancelling this wait leaves it alone.
        """
        where = (self._where, key)
        while (other := _IN_FLIGHT.get(where)) is not None and other[1] is not mine:
            if other[0] is not scheduler:
                # A client on another loop or clock (a test's "other process"): not awaitable
                # here, and it may never settle. Its row still decides: DuplicateSubmitError
                # or an unknown outcome, never a second create.
                break
            await asyncio.wait([other[1]])
        if mine.done():
            return
        _IN_FLIGHT[where] = (scheduler, mine)
        mine.add_done_callback(functools.partial(_landed, where))

    def lease_id(self, key: str) -> str:
        """A lease id stable across reruns on this journal, so a shared ledger re-attaches."""
        where = f"{socket.gethostname()}\0{self.journal.path.resolve()}\0{key}"
        return hashlib.sha256(where.encode()).hexdigest()[:32]

    async def hold_slots(self, submitter: Submitter) -> None:
        """Hold a slot until its horizon for every row that may still run on the provider.

        A rerun right after a kill must not fill the account on top of the tasks the killed
        process left running (accepted, or of unknown outcome).
        """
        scheduler, conn = submitter.scheduler, submitter.conn
        now, wall = submitter.clock.now(), conn.wall_clock()
        slots = conn.account.ledger.slots
        # A damaged row holds no slot: a submit of its key fails naming it, and resume says it.
        for entry in await self.journal.entries(unreadable=[]):
            if entry.state not in ("intent", "submitted", "unknown"):
                # Ended as the journal says: a lease a killed run left for it (its release
                # not yet written to a shared ledger) would hold a slot for nothing.
                slots.drop(self.lease_id(entry.key))
                continue
            if not entry.held_by(self.provider, self.account):
                continue  # another account's task takes none of this account's slots
            model_id = entry.model or (entry.request.model if entry.request else None)
            if model_id is None:
                continue  # an intent whose request no longer reads: no model to count it on
            model = conn.group(model_id)
            submitted = now - max(0.0, wall - entry.updated_at)
            if scheduler.horizon(conn, model, submitted) <= now:
                continue
            lease = slots.take(conn, self.lease_id(entry.key))
            scheduler.hold_to_horizon(conn, lease, model, submitted)
            if entry.state == "submitted":
                self._leases[entry.key] = lease
        if conn.account.ledger.window_in_journal and self._window_writer is None:
            await self._seed_window(submitter)
            self._submitter = submitter
            self._window_writer = asyncio.get_running_loop().create_task(
                self._write_window(submitter), name="nanobanana-journal-window"
            )

    @property
    def _window_name(self) -> str:
        return f"window.{self.provider}.{self.account}"

    async def _seed_window(self, submitter: Submitter) -> None:
        # The requests a killed run sent in the last window still count at the provider: a
        # rerun that started its window empty would overfill it (a 429 on its first sends).
        raw = await self.journal.noted(self._window_name)
        if raw is None:
            return
        try:
            data = json.loads(raw)
            at, pace, closed = float(data["at"]), float(data["pace"]), bool(data["closed"])
            sends = [(float(w), int(n)) for w, n in data["sends"]]
            # NaN or infinity (JSON takes both) would stop the client from starting.
            if not all(math.isfinite(x) for x in (at, pace, *(w for w, _ in sends))):
                raise ValueError("not a finite number")
            if not 0 <= pace <= _MOST_SENDS or sum(n for _, n in sends) > _MOST_SENDS:
                raise ValueError("more sends than any window holds")
        except (ValueError, KeyError, TypeError, OverflowError):
            return  # a damaged note seeds nothing; the pace and the 429s still hold
        now, wall = submitter.clock.now(), submitter.conn.wall_clock()
        # A send recorded ahead of this wall clock (set back since, or another machine's) counts
        # as sent now: placed in the future it would hold the window shut until then.
        times = [now - max(0.0, wall - w) for w, n in sends for _ in range(n)]
        if not closed:
            # Killed: it may have sent at its pace after its last write, until it died.
            end = min(wall, at + _UNWRITTEN)
            times += [now - (wall - end)] * math.ceil(pace * max(0.0, end - at))
        ledger = submitter.conn.account.ledger
        ledger.seed_sends(times)
        learned = data.get("learned")
        try:
            if learned is not None:
                requests, per, cap = int(learned[0]), float(learned[1]), int(learned[2])
                limits = Limits(requests=requests, per=per, concurrent_tasks=cap)
                ledger.adopt_learned(limits, age=max(0.0, wall - at))
        except (ValueError, TypeError, IndexError, ConfigurationError):
            return  # a damaged entry teaches nothing; the 429s will

    def _window(self, submitter: Submitter, *, closed: bool) -> str:
        ledger = submitter.conn.account.ledger
        now, wall = submitter.clock.now(), submitter.conn.wall_clock()
        buckets: dict[float, int] = {}
        for at in ledger.recent_sends():
            # Rounded up: a send remembered later leaves the window later, never sooner.
            bucket = round(math.ceil((wall - (now - at)) / _BUCKET) * _BUCKET, 3)
            buckets[bucket] = buckets.get(bucket, 0) + 1
        limits = ledger.effective
        # What this run learned of the account, for a rerun (before its quiet period ends).
        learned = None
        if limits != ledger.configured:
            learned = [limits.requests, limits.per, limits.concurrent_tasks]
        return json.dumps(
            {
                "at": wall,
                "closed": closed,
                "pace": limits.requests / limits.per,
                "sends": sorted(buckets.items()),
                "learned": learned,
            }
        )

    async def _write_window(self, submitter: Submitter) -> None:
        # One small write a second while requests go, so a rerun after a kill -9 knows them.
        ledger, clock = submitter.conn.account.ledger, submitter.clock
        written = ledger.requests
        while True:
            await clock.sleep_until(clock.now() + WINDOW_EVERY)
            if ledger.requests == written:
                continue
            written = ledger.requests
            try:
                await self.journal.note(self._window_name, self._window(submitter, closed=False))
            except Exception as exc:  # a full disk: the tasks' own records matter more
                _log.warning("the journal could not record the account's recent sends: %s", exc)
                return

    async def reattach(
        self, submitter: Submitter, known: JournalEntry, asked: ImageRequest | None
    ) -> Task:
        """The task of a request the journal already holds, instead of paying for it again:
        tracked again while it may still run, else ended as recorded. ``asked`` is the
        request submitted now (named in an error when the journal's copy no longer reads).

        Raises:
            WrongAccountError: the row is another account's (provider or key): its task is
                not checked with this key, nor submitted again.
            SubmitOutcomeUnknownError: the row has no task id (the create may have been
                accepted); it is not sent again.
        """
        if not known.held_by(self.provider, self.account):
            held = "its submit, of unknown outcome," if known.task_id is None else "its task"
            raise WrongAccountError(
                f"the journal {self.journal.path} holds {held} for this request (key "
                f"{known.key[:16]}…) on {known.provider} account {known.account}, not on this "
                f"client's ({self.provider} account {self.account}): it is not checked with "
                "this key nor submitted again; use that account's key to resume it",
                key=known.key,
                provider=known.provider,
                account=known.account or "",
                task_id=known.task_id,
            )
        if known.task_id is None or known.model is None:
            request = known.request or asked
            if request is None:
                # Only a rejoin by key asks nothing, and nothing is sent for a row without an id.
                raise ConfigurationError(
                    f"the journal holds no task id for key {known.key[:16]}…: nothing to resume"
                )
            raise SubmitOutcomeUnknownError(
                f"the journal holds an earlier submit of this request (key {known.key[:16]}…) "
                "with no task id: it may have been accepted, so it is not submitted again; "
                "check with the provider, then remove it from the journal to retry",
                provider=known.provider,
                request=request,
            )
        if known.state not in ("succeeded", "failed"):
            lease = self._leases.pop(known.key, None)
            # Its age is the journal's: counted from when the row was last written (the
            # acceptance), never from this resume.
            task = submitter.resume(
                known.task_id,
                known.model,
                request=known.request,
                lease=lease,
                submitted_wall=known.updated_at or None,
            )
            self.record_end(task, known.key)
            return task
        ref = TaskRef(submitter.conn.driver.name, known.task_id, known.model)
        task = Task(known.request, clock=submitter.clock)
        task._emitter = submitter.conn.emitter  # a late on_update hears its end, account named
        task._accept(ref)
        if known.state == "failed":
            error = known.error or "failed (recorded in the journal)"
            task._resolve(
                None,
                GenerationFailedError(
                    error, task_id=ref.task_id, provider=ref.provider, model=ref.model
                ),
            )
            return task
        now = dt.datetime.fromtimestamp(submitter.conn.wall_clock(), tz=dt.UTC)
        result = ImageResult(
            task_id=ref.task_id,
            provider=ref.provider,
            model=ref.model,
            urls=known.urls,
            request=known.request,
            submitted_at=now,
            completed_at=now,
        )
        task._resolve(result, None)
        return task

    def record_end(self, task: Task, key: str) -> None:
        """Write the task's end to the journal when it comes (not a timeout or a close).

        Called once its id is in the journal: the task is marked as kept there."""
        task._journal = self._where
        journal = self.journal

        def record(future: asyncio.Future[ImageResult]) -> None:
            if future.cancelled():
                return
            error = future.exception()
            if error is None:
                write = journal.record_end(key, "succeeded", urls=future.result().urls)
            elif isinstance(error, GenerationFailedError):
                write = journal.record_end(key, "failed", error=str(error))
            else:
                return  # timed out, closed, unreadable: the task id stays, resumable
            pending = asyncio.ensure_future(write)
            self._writes.add(pending)
            pending.add_done_callback(self._writes.discard)
            pending.add_done_callback(_said)

        task._future.add_done_callback(record)

    async def aclose(self) -> None:
        """Finish the pending end records (and the account's recent sends), then close the
        journal."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        if self._window_writer is not None and self._submitter is not None:
            self._window_writer.cancel()
            await asyncio.gather(self._window_writer, return_exceptions=True)
            # A clean close says so: a rerun counts exactly these, nothing sent after them.
            window = self._window(self._submitter, closed=True)
            with contextlib.suppress(Exception):
                await self.journal.note(self._window_name, window)
        await self.journal.aclose()


def _landed(where: tuple[str, str], submit: asyncio.Future[Task]) -> None:
    # Its row now says what became of it: the next client waiting for it reads that.
    entry = _IN_FLIGHT.get(where)
    if entry is not None and entry[1] is submit:
        del _IN_FLIGHT[where]


def _said(write: asyncio.Future[None]) -> None:
    # An end record that failed (a full disk) leaves the row "submitted": a rerun checks the
    # task again, nothing is lost. Said once here, not as "exception was never retrieved".
    if not write.cancelled() and (error := write.exception()) is not None:
        _log.warning("the journal could not record a task's end: %s", error)
