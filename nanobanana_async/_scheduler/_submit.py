"""From an ImageRequest to a tracked Task: the journal's lookup, a callback URL, a slot under the
account's cap, the create (:func:`create`, with its retries), then tracking by the runner, and
what each way a create can fail means for the slot, the journal and the callback (does I/O).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

import attrs

from .._clock import Clock
from .._errors import (
    APIError,
    ClientClosedError,
    ConfigurationError,
    ConnectError,
    CoordinatorUnavailableError,
    GenerationFailedError,
    InvalidRequestError,
    StorageError,
    SubmitOutcomeUnknownError,
    TaskError,
)
from .._journal import Intent, request_key
from .._models import Balance, ImageRequest, ImageResult, TaskRef, TaskStatus, is_seconds
from .._settings import Settings
from .._task import Task
from .._transport import guard
from ..events import _Emitter
from ..providers import validate
from ..webhooks._registration import Registration
from ._account import Connection, Tracked
from ._create import NotWantedError, create
from ._journaled import JournalHooks
from ._ledger import Lease
from ._runner import Scheduler

if TYPE_CHECKING:
    # Only a type here: the receiver (aiohttp.web) loads when a caller makes one.
    from ..webhooks import CallbackReceiver

_log = logging.getLogger("nanobanana_async")
# A create's caller's waiter, how to settle the callers sharing that create (journal), and
# whether the caller waits for the task's end (generate) rather than its acceptance.
_Handover = tuple[asyncio.Future[Task | None], Callable[[Task | BaseException], None] | None, bool]


@attrs.define
class Submitter:
    """One client's submits and resumes on its scheduler connection.

    Args:
        closed: true once the client closed; nothing is sent after that.
        task_timeout: seconds a task is tracked when its request sets no timeout.
    """

    scheduler: Scheduler
    conn: Connection
    clock: Clock
    task_timeout: float
    closed: Callable[[], bool]
    journal: JournalHooks | None = None
    callbacks: CallbackReceiver | None = None
    # The creates' own tasks, each with its caller's waiter and its sharers' settle.
    _running: dict[asyncio.Task[None], _Handover] = attrs.field(factory=dict, init=False)
    _sharing: dict[str, asyncio.Future[Task]] = attrs.field(factory=dict, init=False)

    async def rejoin(self, key: str) -> Task:
        """The task the journal holds for ``key``, tracked again (or ended as recorded);
        never a create, whatever the row's request reads as.

        Raises:
            ConfigurationError: no journal, no row of ``key``, or a row with no task id.
            WrongAccountError: the row is another account's.
        """
        if self.journal is None:
            raise ConfigurationError("rejoin needs a client with a journal")
        known = await self.journal.journal.get(key)
        if known is None:
            raise ConfigurationError(f"the journal {self.journal.journal.path} has no key {key!r}")
        task = await self.journal.reattach(self, known, None)
        task.key = key
        return task

    async def submit(
        self,
        request: ImageRequest,
        key: str | None,
        *,
        retry_refusals: bool = True,
        wanted: Callable[[], bool] | None = None,
    ) -> Task:
        """See ``Client.submit``; ``retry_refusals=False`` and ``wanted``: see :func:`create`."""
        if self.journal is None:
            _, waiter, lease = await self._start(request, key, None, retry_refusals, wanted)
            return await self._wait(waiter, lease, request)
        journal_key = key or request_key(self.conn.driver.name, request)
        while (shared := self._sharing.get(journal_key)) is not None:
            # The same request is being submitted now: one create, its task for every caller.
            try:
                return await asyncio.shield(shared)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if not shared.cancelled() or (current is not None and current.cancelling()):
                    raise
                # Its caller gave up before the create was sent: this caller submits it.
        shared = asyncio.get_running_loop().create_future()
        shared.add_done_callback(lambda f: None if f.cancelled() else f.exception())
        # Registered before the first await: a caller arriving meanwhile joins this submit.
        self._sharing[journal_key] = shared
        try:
            # Another client sharing the journal submitting it now: its row decides, once
            # written (as for a rerun), not the moment this lookup meets its thread's writes.
            await self.journal.after_others(journal_key, shared, self.scheduler)
            known = await self.journal.journal.get(journal_key)
            if known is not None:
                task = await self.journal.reattach(self, known, request)
                task.key = key
                self._settle(journal_key, shared, task)
                return task
            _, waiter, lease = await self._start(
                request,
                key,
                journal_key,
                retry_refusals,
                wanted,
                settle=functools.partial(self._settle, journal_key, shared),
            )
        except BaseException as exc:
            self._settle(journal_key, shared, exc)
            raise
        return await self._wait(waiter, lease, request)

    async def generate(self, request: ImageRequest) -> ImageResult:
        """See ``Client.generate``: :meth:`submit`, then the task's result.

        Without a journal its caller is woken once, at the task's end, not also at the
        acceptance (one loop callback less per task).
        """
        if self.journal is not None:
            task = await self.submit(request, None)
            try:
                return await task
            except asyncio.CancelledError:
                log_orphaned(task, "generate() was cancelled after")
                raise
        # _start()'s steps, without its coroutine or the slot's when one is free now.
        receiver = self._checked(request)
        slots = self.conn.account.ledger.slots
        lease = slots.try_acquire(self.conn) or await slots.acquire(self.conn)
        task, waiter = self._launch(request, None, None, lease, receiver, to_end=True)
        try:
            await waiter
            # Woken to send the task's due status check: sent from this task, whose answer
            # resolves the task here (Task._take_check). One waiter at a time is kept, and
            # no generator: a pending call keeps as few objects as before.
            while (check := task._taken_check()) is not None:
                await check.run_here()
                if task.done():
                    break
                waiter = task._rewait()
                await waiter
        except asyncio.CancelledError:
            self.generate_cancelled(task, waiter, lease, request)
            raise
        return await task  # ended: returns at once

    def start_generate(
        self, request: ImageRequest
    ) -> tuple[Task, asyncio.Future[Task | None], Lease] | None:
        """:meth:`generate`'s start when nothing has to wait (no journal, a slot free now):
        the task, the waiter its caller awaits (woken at the task's end, or with the create's
        error) and its slot; None when the caller must ``await generate(request)`` instead.

        A caller that awaits the waiter in its own coroutine keeps one object less per
        pending ``generate()`` than one awaiting :meth:`generate`; on ``CancelledError`` it
        calls :meth:`generate_cancelled`, then re-raises, and else returns ``await task``.

        Raises:
            InvalidRequestError: as ``generate``.
        """
        if self.journal is not None:
            return None
        receiver = self._checked(request)
        lease = self.conn.account.ledger.slots.try_acquire(self.conn)
        if lease is None:
            return None  # generate() checks the request again: only when slots are full
        task, waiter = self._launch(request, None, None, lease, receiver, to_end=True)
        return task, waiter, lease

    def generate_cancelled(
        self,
        task: Task,
        waiter: asyncio.Future[Task | None],
        lease: Lease,
        request: ImageRequest,
    ) -> None:
        """A wait on :meth:`start_generate`'s waiter ended in ``CancelledError``: returns
        when the caller itself was cancelled (it re-raises), after logging an accepted
        task's id; raises when the client closed under the submit.

        Raises:
            SubmitOutcomeUnknownError: the client closed after the create was sent.
            ClientClosedError: the client closed before it was sent.
        """
        task._drop_waiter(waiter)
        current = asyncio.current_task()
        if current is None or current.cancelling():
            # Not yet accepted: the create's task logs the id if it is (_hand_over).
            log_orphaned(task, "generate() was cancelled after")
            return
        self._closed_while_submitting(lease, request)

    def _settle(
        self,
        journal_key: str,
        shared: asyncio.Future[Task],
        outcome: Task | BaseException | asyncio.Future[Task],
    ) -> None:
        # Unregistered at once, not in a done callback: a later caller must never find a
        # settled entry (a cancelled one would make it spin).
        if self._sharing.get(journal_key) is shared:
            del self._sharing[journal_key]
        if shared.done():
            return
        if isinstance(outcome, asyncio.Future):
            if outcome.cancelled():
                shared.cancel()
                return
            error = outcome.exception()
            outcome = outcome.result() if error is None else error
        if isinstance(outcome, asyncio.CancelledError | NotWantedError):
            # Nothing was sent for it: a caller sharing this create submits it itself.
            shared.cancel()
        elif isinstance(outcome, BaseException):
            shared.set_exception(outcome)
        else:
            shared.set_result(outcome)

    async def _start(
        self,
        request: ImageRequest,
        key: str | None,
        journal_key: str | None,
        retry_refusals: bool = True,
        wanted: Callable[[], bool] | None = None,
        *,
        settle: Callable[[Task | BaseException], None] | None = None,
    ) -> tuple[Task, asyncio.Future[Task | None], Lease]:
        # Check, take a slot, then hand the create to a task of its own (see _wait).
        receiver = self._checked(request)
        lease_id = None
        if self.journal is not None and journal_key is not None:
            lease_id = self.journal.lease_id(journal_key)
        slots = self.conn.account.ledger.slots
        lease = slots.try_acquire(self.conn, lease_id) or await slots.acquire(self.conn, lease_id)
        task, waiter = self._launch(
            request, key, journal_key, lease, receiver, retry_refusals, wanted, settle=settle
        )
        return task, waiter, lease

    def _checked(self, request: ImageRequest) -> CallbackReceiver | None:
        # Checked as it will be sent (a model may require the callback URL) before any wait;
        # the client's receiver when the request will carry its callback URL.
        receiver = self.callbacks
        if not (
            receiver is not None
            and self.conn.driver.supports_callback
            and request.callback_url is None
        ):
            validate(self.conn.driver, request)
            return None
        url = receiver._base_url()
        validate(self.conn.driver, attrs.evolve(request, callback_url=url))
        return receiver

    def _launch(
        self,
        request: ImageRequest,
        key: str | None,
        journal_key: str | None,
        lease: Lease,
        receiver: CallbackReceiver | None,
        retry_refusals: bool = True,
        wanted: Callable[[], bool] | None = None,
        *,
        settle: Callable[[Task | BaseException], None] | None = None,
        to_end: bool = False,
    ) -> tuple[Task, asyncio.Future[Task | None]]:
        # No await in here: between the slot's grant and the create's task that frees it
        # however it ends, nothing can cancel the caller and leave the slot held.
        driver, conn = self.conn.driver, self.conn
        # Registered only once a slot is held: callers waiting for slots hold no token, and a
        # token is not forgotten while its submit waits its turn.
        callback: Registration | None = None
        sent = request
        if receiver is not None:
            callback = receiver._register(driver, self.clock)
            sent = attrs.evolve(request, callback_url=callback.url)
        task = Task(request, key, self.clock)
        task._emitter = conn.emitter
        intent = None
        if self.journal is not None and journal_key is not None:
            intent = Intent(
                self.journal.journal, journal_key, driver.name, sent, account=self.journal.account
            )
        loop = asyncio.get_running_loop()
        # The caller awaits ``waiter``, not the create's task: once sent, a cancelled caller
        # must not abandon a task that may be running, so cancelling the caller cancels only
        # the waiter. The create's task hands its outcome over itself as it ends (what
        # asyncio.shield did with three loop callbacks, plus one to retrieve the error and one
        # to forget the task: ~1.4 of the ~9 loop callbacks per request, benchmarks.loops).
        waiter: asyncio.Future[Task | None] = loop.create_future()
        handover = (waiter, settle, to_end)
        inner = loop.create_task(
            self._create(
                handover,
                task,
                sent,
                lease,
                callback,
                intent,
                retry_refusals,
                wanted,
            )
        )
        self._running[inner] = handover
        return task, waiter

    async def _create(
        self,
        handover: _Handover,
        task: Task,
        request: ImageRequest,
        lease: Lease,
        callback: Registration | None,
        intent: Intent | None,
        retry_refusals: bool,
        wanted: Callable[[], bool] | None,
    ) -> None:
        # The create's own task: it never raises but to be cancelled (stop()), so nothing is
        # left for a done callback to retrieve; the outcome goes to the caller's waiter.
        conn = self.conn
        submitted = self.clock.now()
        try:
            try:
                ref = await create(
                    conn,
                    self.clock,
                    request,
                    lease,
                    intent=intent,
                    closed=self.closed,
                    retry_refusals=retry_refusals,
                    key=task.key,
                    wanted=wanted,
                )
            except BaseException as exc:
                await self._not_accepted(exc, request, lease, callback, intent, submitted)
                raise
            made = self._accepted(task, ref, request, lease, callback, submitted)
            if intent is not None:
                await self._record(task, ref, intent)
        except Exception as exc:
            if isinstance(exc, SubmitOutcomeUnknownError):
                self._unknown_unheard(handover, lease)
            self._hand_over(handover, exc)
            return
        except BaseException as exc:
            self._unknown_unheard(handover, lease)
            self._hand_over(handover, exc)
            raise
        self._hand_over(handover, made)

    def _unknown_unheard(self, handover: _Handover, lease: Lease) -> None:
        # A create that was sent ended of unknown outcome (timed out, or stopped by aclose)
        # after its caller was cancelled: no id is known, but it may be paid for, so say so.
        # A journal keeps its intent and a rerun reports it (the CLI's Ctrl-C says so once).
        # The local simulator's tasks are paid by no one and end with the process.
        if (
            self.journal is None
            and handover[0].done()
            and lease.sent
            and self.conn.driver.name != "local"
        ):
            _log.warning(
                "a create to %s whose caller had stopped waiting ended of unknown outcome: it "
                "may have been accepted and paid for, and no task id is known",
                self.conn.driver.name,
            )

    def _hand_over(self, handover: _Handover, outcome: Task | BaseException) -> None:
        # Forget the create's task, settle the callers sharing it, and hand its outcome to
        # the caller unless that caller gave up (cancelled, so its waiter is).
        waiter, settle, to_end = handover
        current = asyncio.current_task()
        if current is not None:
            self._running.pop(current, None)
        if settle is not None:
            settle(outcome)
        if isinstance(outcome, asyncio.CancelledError):
            waiter.cancel()
        elif waiter.done():
            # Its caller was cancelled while the create was on the wire: nobody holds the id.
            if not isinstance(outcome, BaseException):
                log_orphaned(outcome, "the caller had stopped waiting when")
            elif isinstance(outcome, StorageError) and outcome.task is not None:
                # Accepted, but the journal could not record it: the error held the id.
                log_orphaned(outcome.task, "the caller had stopped waiting when")
            return
        elif isinstance(outcome, BaseException):
            waiter.set_exception(outcome)
        elif to_end and not outcome.done():
            # Woken by the task's end, as any of its waiters (set to None then).
            # Not typing.cast (a call per task): it is set to None, as Task's own waiters.
            outcome._add_waiter(waiter)  # type: ignore[arg-type]
        else:
            waiter.set_result(outcome)

    async def _wait(
        self, waiter: asyncio.Future[Task | None], lease: Lease, request: ImageRequest
    ) -> Task:
        try:
            task = await waiter
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is None or current.cancelling():
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    # Accepted in the iteration its caller was cancelled: the Task is lost.
                    made = waiter.result()
                    if made is not None:
                        log_orphaned(made, "submit() was cancelled after")
                raise
            self._closed_while_submitting(lease, request)
        assert task is not None, "only generate() waits for the task's end"
        return task

    def _closed_while_submitting(self, lease: Lease, request: ImageRequest) -> NoReturn:
        # The waiter was cancelled and its caller was not: stop() ended the submit.
        name = self.conn.driver.name
        if lease.sent:
            raise SubmitOutcomeUnknownError(
                f"the client closed while a submit to {name} was in flight: it may have been "
                "accepted",
                provider=name,
                request=request,
            )
        raise ClientClosedError("the client closed before this submit was sent")

    async def stop(self) -> None:
        """Cancel the submits still running (the client is closing) and wait for them.

        A submit left running would send on (and reopen) the closed transport and outlive the
        event loop (Ctrl-C in ``async with``). Its journal intent stays: a create already sent
        is reported as of unknown outcome, never sent again by itself.
        """
        running = [submit for submit in self._running if not submit.done()]
        for submit in running:
            submit.cancel()
        if running:
            await asyncio.wait(running)
        # A create's task cancelled before its first step never ran to hand over: its caller
        # and sharers hear the cancellation here.
        for handover in [self._running.pop(submit) for submit in list(self._running)]:
            self._hand_over(handover, asyncio.CancelledError())

    async def balance(self) -> Balance:
        """The account's balance, read from the provider's balance endpoint."""
        conn = self.conn
        http = conn.driver.build_balance()
        assert http is not None, "the client checks that the provider has one"
        await conn.account.ledger.acquire_request()
        conn.account.ledger.note_send()
        response = await conn.transport.send(http, timeout=conn.timeouts.request)
        return Balance(conn.driver.name, conn.driver.parse_balance(response))

    async def poll(self, task_id: str, model: str) -> TaskStatus:
        """One status check of ``task_id`` (``model`` is the provider's id), sent now under the
        account's request window: no retry, no tracking."""
        conn = self.conn
        ref = TaskRef(conn.driver.name, task_id, model)
        await conn.account.ledger.acquire_request()
        conn.account.ledger.note_send()
        response = await conn.transport.send(
            conn.driver.build_status(ref), timeout=conn.timeouts.request
        )
        return conn.driver.parse_status(response, ref)

    async def _not_accepted(
        self,
        exc: BaseException,
        request: ImageRequest,
        lease: Lease,
        callback: Registration | None,
        intent: Intent | None,
        submitted: float,
    ) -> None:
        # What a create that raised ``exc`` leaves behind: its slot, its intent, its callback
        # URL. The caller raises ``exc`` on.
        conn = self.conn
        if isinstance(
            exc,
            ConnectError
            | APIError
            | ClientClosedError
            | StorageError
            | ConfigurationError
            | CoordinatorUnavailableError,
        ):
            # Nothing was created (nothing sent, refused before acceptance, no grant from the
            # coordinator, or the journal could not be written before the send): the slot is
            # free again and a rerun may submit this request again.
            conn.account.ledger.slots.release(lease)
            if intent is not None:
                try:
                    await intent.clear()
                except Exception as error:
                    # Left as an intent, the rerun reports it of unknown outcome: safe.
                    _log.warning("the journal could not clear an intent: %s", error)
        elif isinstance(exc, TaskError):
            # The create's own answer says the task was made and failed (xingchao answers a
            # content refusal so): it is over, with an id, so its slot is free and the journal
            # records the failure, never an unknown outcome.
            conn.account.ledger.slots.release(lease)
            if intent is not None:
                await intent.failed(exc.task_id, exc.model, str(exc))
        elif isinstance(exc, asyncio.CancelledError) and not lease.sent:
            # Stopped (its client closing) before its slot was admitted, so before any send:
            # nothing was created, and a slot held to the horizon would keep the account's
            # other clients waiting (a create queued for its turn is stopped so).
            conn.account.ledger.slots.release(lease)
        else:
            # The create may have reached the provider: the task may run, so its slot stays
            # held until the task's horizon.
            self.scheduler.hold_to_horizon(conn, lease, conn.group(request.model), submitted)
            if intent is not None and isinstance(exc, SubmitOutcomeUnknownError):
                await intent.unknown(str(exc))
        if callback is not None:
            callback.discard()

    def _accepted(
        self,
        task: Task,
        ref: TaskRef,
        request: ImageRequest,
        lease: Lease,
        callback: Registration | None,
        submitted: float,
    ) -> Task:
        # Tracked first, before any await: whatever happens to the journal after, the paid
        # task is polled, its slot released at its end, and its id reachable.
        task._accept(ref)
        if _log.isEnabledFor(logging.INFO):  # the clock is read for this line only
            _log.info(
                "%s accepted task %s (model %s) in %.0f ms",
                ref.provider,
                ref.task_id,
                ref.model,
                (self.clock.now() - submitted) * 1000,
            )
        # A receiver that warned no callback reaches it: polled as without one until one does.
        late = callback is not None and callback.expects_callback()
        entry = self._track(task, ref, request.timeout, lease, late=late)
        if callback is not None:
            scheduler = self.scheduler
            callback.bind(
                ref.task_id,
                lambda claimed: scheduler.hint(entry, claimed),
                lambda: scheduler.poll_normally(entry),
            )
            task._future.add_done_callback(
                lambda done: callback.finished(seen_ended=_seen_ended(done))
            )
        return task

    async def _record(self, task: Task, ref: TaskRef, intent: Intent) -> None:
        # Durable before the caller hears of the task: a crash from here on re-attaches.
        try:
            await intent.submitted(ref)
        except Exception as exc:
            # Raised, not also logged: the error carries the id, and its caller (the CLI)
            # says it where the user looks.
            raise StorageError(
                f"{ref.provider} accepted task {ref.task_id} but the journal could not "
                f"record it ({type(exc).__name__}: {exc}); it is still tracked: await "
                "this error's task",
                task_id=ref.task_id,
                path=str(intent.path),
                task=task,
            ) from None
        assert self.journal is not None
        self.journal.record_end(task, intent.key)

    def _track(
        self,
        task: Task,
        ref: TaskRef,
        timeout: float | None,
        lease: Lease | None,
        *,
        late: bool = False,
        submitted_wall: float | None = None,
        resumed: bool = False,
    ) -> Tracked:
        conn = self.conn
        conn.account.tracked += 1
        wall = conn.wall_clock()
        submitted = None
        if submitted_wall is not None:
            submitted_wall = min(wall, submitted_wall)
            submitted = self.clock.now() - (wall - submitted_wall)
        return self.scheduler.track(
            task,
            ref=ref,
            conn=conn,
            lease=lease,
            submitted_wall=wall if submitted_wall is None else submitted_wall,
            timeout=timeout or self.task_timeout,
            late=late,
            resumed=resumed,
            submitted=submitted,
        )

    def resume(
        self,
        task_id: str,
        model: str,
        *,
        request: ImageRequest | None = None,
        timeout: float | None = None,
        lease: Lease | None = None,
        submitted_wall: float | None = None,
    ) -> Task:
        """Track a task that was submitted earlier; ``model`` is the provider's id.

        ``submitted_wall``: when a record (the journal) saw it accepted, in wall-clock
        seconds: its age, and so its checks and its slot's horizon, count from then, never
        from the resume. ``lease``: the slot a rerun already holds for it.
        """
        if self.closed():
            raise ClientClosedError("the client is closed")
        task = Task(request, clock=self.clock)
        task._emitter = self.conn.emitter
        ref = TaskRef(self.conn.driver.name, task_id, model)
        task._accept(ref)
        slots = self.conn.account.ledger.slots
        # The task runs on the provider whether or not a slot is free, so it takes one even
        # over the cap: new submits then wait until the account really has room.
        if lease is None or not lease.held:
            lease = slots.take(self.conn)
        else:
            slots.keep(lease)  # tracked again: freed when it ends, not at its old horizon
        self.conn.account.ledger.note_accepted(lease)
        self._track(task, ref, timeout, lease, submitted_wall=submitted_wall, resumed=True)
        return task


def log_orphaned(task: Task, what: str) -> None:
    """Log, once per task, the id of an accepted task whose caller went away (a cancelled
    ``generate``, ``wait_for`` or web handler): it runs on and is paid for, so its id must be
    reachable. At WARNING with the ``resume`` call, or at INFO naming the journal when a
    journal holds the id. Never the key or the prompt: provider, id and model only."""
    ref = task.ref
    if ref is None or not task._orphan():
        return
    if task._journal is not None:
        # The journal holds its id (recorded before any caller heard of it): nothing is
        # lost, so no WARNING (the CLI's Ctrl-C stays its one line), only a note at INFO.
        _log.info(
            "%s %s accepted task %s (model %s): it runs on and is paid for; its id is in the "
            "journal %s",
            what,
            ref.provider,
            ref.task_id,
            ref.model,
            task._journal,
        )
        return
    if task.done():
        now = "it is no longer tracked"
    else:
        now = (
            "it stays tracked until it ends or the client closes (its end goes to the "
            "journal, if any, and to events)"
        )
    _log.warning(
        "%s %s accepted task %s (model %s): it runs on and is paid for; %s; get its result "
        "with client.resume(%r, model=%r)",
        what,
        ref.provider,
        ref.task_id,
        ref.model,
        now,
        ref.task_id,
        ref.model,
    )


def _seen_ended(done: asyncio.Future[ImageResult]) -> bool:
    # Ended as the provider reported it (a result, or the task's own failure), not by a
    # deadline or a close: only then was a callback due.
    if done.cancelled():
        return False
    error = done.exception()
    return error is None or isinstance(error, GenerationFailedError)


def connect(
    settings: Settings,
    *,
    closed: Callable[[], bool],
    journal: JournalHooks | None = None,
    callbacks: CallbackReceiver | None = None,
    emitter: _Emitter | None = None,
) -> Submitter:
    """A client's connection to its loop's scheduler and its account there, ready to submit."""
    scheduler = Scheduler.for_clock(settings.clock)
    scheduler.attach()
    account = scheduler.account(
        (settings.driver.name, settings.base_url, settings.key, settings.coordinator),
        settings.limits,
        settings.retry,
        settings.ledger_factory(),
        limits_known=settings.limits_known,
    )
    if emitter is None:
        emitter = _Emitter()
    account.events.add(emitter, settings.driver.name)
    conn = Connection(
        driver=settings.driver,
        # The one door every answer and transport error comes in by: the key is masked here,
        # whatever transport the caller brought.
        transport=guard(settings.transport, settings.key),
        base_url=settings.base_url,
        account=account,
        policy=settings.retry,
        timeouts=settings.timeouts,
        wall_clock=settings.wall_clock,
        random=settings.random,
        emitter=emitter,
    )
    return Submitter(
        scheduler, conn, settings.clock, settings.task_timeout, closed, journal, callbacks
    )


def check_resume(settings: Settings, task_id: object, model: object, timeout: object) -> str:
    """The provider's model id for a ``resume()`` call (its arguments as the caller passed
    them: typed ``object`` because the check is for what the annotations do not hold).

    Raises:
        InvalidRequestError: a task id that is not a non-empty string, a model the provider
            does not offer, or a timeout that is not a positive, finite number of seconds.
    """
    errors = []
    if not isinstance(task_id, str) or not task_id.strip():
        errors.append("task id must be a non-empty string @ $.task_id")
    # Not a string (a list is not even hashable): no model, and not a bare TypeError.
    spec = settings.driver.model_spec(model) if isinstance(model, str) else None
    if spec is None:
        errors.append(f"model {model!r} is not offered by {settings.driver.name} @ $.model")
    # As ImageRequest's timeout: "5" was a bare TypeError, NaN and True were taken.
    if timeout is not None and not is_seconds(timeout):
        errors.append("timeout must be a positive number of seconds @ $.timeout")
    if errors or spec is None:
        raise InvalidRequestError(errors)
    return spec.wire_id
