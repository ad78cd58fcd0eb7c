"""Task: the awaitable handle a caller holds for one submitted image (touches the event loop)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, Protocol

from ._clock import DEFAULT_CLOCK, Clock
from ._errors import ConfigurationError, InvalidRequestError, NanoBananaError, TaskTimeoutError
from ._models import ImageRequest, ImageResult, TaskRef, TaskState, TaskStatus, is_seconds
from .events import Resolved, _check_callback, _result_without_prompt, _unawaited

if TYPE_CHECKING:
    from ._routing import Attempt
    from .events import Event, _Emitter

_log = logging.getLogger("nanobanana_async")


class _Check(Protocol):
    """A status check of a task that the scheduler hands to the caller awaiting it, to send
    in the caller's own task (no task of its own, no hand-over from it to the caller)."""

    def run_here(self) -> Awaitable[None]:
        """Send the check and perform its outcome in the calling task; never raises but
        ``CancelledError`` (the check is then handed back to the scheduler)."""
        ...

    def give_back(self) -> None:
        """The caller it was handed to left before running it: the scheduler sends it."""
        ...


class Task:
    """One image task. Await it (``await task``) for its :class:`ImageResult`.

    Cancelling a coroutine that awaits the task detaches only that waiter: the task goes on
    being tracked (it was paid for) until it finishes or its deadline passes.
    """

    __slots__ = (
        "__weakref__",
        "_clock",
        "_emitter",
        "_ended",
        "_future",
        "_handed",
        "_journal",
        "_orphaned",
        "_ref",
        "_request",
        "_sources",
        "_status",
        "_updates",
        "_waiters",
        "attempts",
        "key",
    )

    def __init__(
        self, request: ImageRequest | None, key: str | None = None, clock: Clock = DEFAULT_CLOCK
    ) -> None:
        self._request = request
        self._clock = clock  # the client's: result(timeout=) waits on it, as the deadline does
        # The key it was submitted under (submit(key=) or an as_completed pair).
        self.key = key
        # Through a Router: each account it was sent to, and what happened there.
        self.attempts: tuple[Attempt, ...] = ()
        self._ref: TaskRef | None = None
        self._status: TaskStatus | None = None
        self._future: asyncio.Future[ImageResult] = asyncio.get_running_loop().create_future()
        # One future per waiting caller, so cancelling a caller cancels only its own (what
        # asyncio.shield() gave, at two loop callbacks and a future more per await). The one
        # waiter most tasks have is kept bare, a list only from the second: a pending task
        # keeps a dozen objects, each walked by every full collection.
        self._waiters: asyncio.Future[None] | list[asyncio.Future[None]] | None = None
        # A status check handed to the one awaiting caller (woken to send it), not yet taken.
        self._handed: _Check | None = None
        # Its client's events (set when a client tracks it) and the on_update callbacks.
        self._emitter: _Emitter | None = None
        self._updates: list[Callable[[Event], object]] | None = None
        # Its Resolved event when one was emitted, for an on_update that comes after the end.
        self._ended: Resolved | None = None
        # Through a Router that follows hedges or resubmits: the tasks this one stands for,
        # whose events its on_update callbacks hear.
        self._sources: list[Task] | None = None
        # Its id was logged as one no caller will hear (see _orphan): logged once only.
        self._orphaned = False
        # The journal that holds its id (set when a journal records it or re-attaches it):
        # a caller that leaves then loses nothing, so its id is not logged at WARNING.
        self._journal: str | None = None

    def __repr__(self) -> str:
        return f"<Task id={self.id!r} state={self.state.value}>"

    @property
    def id(self) -> str | None:
        """The provider's task id; None only when the submit itself failed."""
        return self._ref.task_id if self._ref else None

    @property
    def ref(self) -> TaskRef | None:
        """Provider, task id and model: what ``Client.resume`` needs."""
        return self._ref

    @property
    def request(self) -> ImageRequest | None:
        """The request, when this process submitted it."""
        return self._request

    @property
    def status(self) -> TaskStatus | None:
        """The last status a check saw, None before the first check."""
        return self._status

    @property
    def state(self) -> TaskState:
        """SUCCEEDED or FAILED once resolved, else the last state seen (QUEUED before any)."""
        if self._future.done():
            if self._future.cancelled() or self._future.exception() is not None:
                return TaskState.FAILED
            return TaskState.SUCCEEDED
        return self._status.state if self._status else TaskState.QUEUED

    def done(self) -> bool:
        """True once the task has a result or an error."""
        return self._future.done()

    async def result(self, timeout: float | None = None) -> ImageResult:
        """Wait for the images.

        Args:
            timeout: seconds to wait here; None waits for the task's own deadline. Running
                out raises ``TaskTimeoutError`` but leaves the task tracked.

        Raises:
            InvalidRequestError: ``timeout`` is not a number of seconds, 0 or more.
            TaskError: the task failed or passed its deadline (``task_id`` is set).
            APIError: the provider refused the status checks (auth, malformed answers).
        """
        if timeout is not None and not is_seconds(timeout, zero=True):
            # result(timeout=-1) said "not finished within -1 s"; "5" was a bare TypeError.
            raise InvalidRequestError(
                ["timeout must be a number of seconds, 0 or more @ $.timeout"]
            )
        if self._future.done():
            return self._future.result()
        self._check_loop()
        if timeout is None:
            return await self
        if not self._future.done():
            alarm = asyncio.ensure_future(self._clock.sleep_until(self._clock.now() + timeout))
            try:
                # wait() never cancels the task's future, only stops waiting for it.
                await asyncio.wait((self._future, alarm), return_when=asyncio.FIRST_COMPLETED)
            finally:
                alarm.cancel()
        if self._future.done():
            return self._future.result()
        ref = self._ref
        raise TaskTimeoutError(
            f"not finished within {timeout} s; still tracked",
            task_id=ref.task_id if ref else "",
            provider=ref.provider if ref else "",
            model=ref.model if ref else "",
        )

    def on_update(self, callback: Callable[[Event], object]) -> None:
        """Call ``callback`` with each of this task's events from now on (``checked``,
        ``callback``, ``retrying``, ``resolved`` …; see :mod:`nanobanana_async.events`).

        It runs on the event loop as each event happens; an exception from it is logged once
        and never reaches the task. Nothing more comes once the task is done. A Router task
        that is hedged or resubmitted hears the events of each task it follows.

        On a task that has already ended (awaited before, or re-attached from a journal that
        recorded its end) ``callback`` is called once, soon (as asyncio calls a done future's
        callbacks), with its ``resolved`` event: the one emitted at its end when events were
        on, else one made now, whose ``checks`` and ``callbacks`` are 0 and whose
        ``latency`` is the result's ``completed_at - submitted_at`` (0 on a failure).

        Raises:
            ConfigurationError: ``callback`` is not callable, or is an ``async def`` (it
                would never be awaited: iterate ``client.events()`` instead).
        """
        _check_callback(callback, "on_update")
        if self._future.done():
            self._future.get_loop().call_soon(self._late_update, callback)
            return
        if self._updates is None:
            self._updates = []
            if self._emitter is not None and not self._future.done():
                self._emitter.watch()
            for source in self._sources or ():
                source.on_update(self._notify)
        self._updates.append(callback)

    def _notify(self, event: Event) -> None:
        # Nothing once it is done: a Router task's hedge that lost is followed to its end, and
        # its own ``resolved`` would read as this task's second end.
        if self._future.done():
            return
        if type(event) is Resolved:
            self._ended = event
        for callback in tuple(self._updates or ()):
            self._call(callback, event)

    def _call(self, callback: Callable[[Event], object], event: Event) -> None:
        try:
            result = callback(event)
            if result is not None and (wrong := _unawaited(result)) is not None:
                raise wrong
        except Exception as exc:
            if self._emitter is not None:
                self._emitter._failed(exc, callback)
            else:  # a Task no client made: no key is known to mask, so the type alone
                _log.warning("an on_update callback raised %s", type(exc).__name__)

    def _late_update(self, callback: Callable[[Event], object]) -> None:
        """An ``on_update`` that came after the end hears the end."""
        self._call(callback, self._ended or self._end_event())

    def _end_event(self) -> Resolved:
        """The ``resolved`` event of this ended task, made now (none was emitted)."""
        ref = self._ref
        result: ImageResult | None = None
        error: NanoBananaError | None = None
        latency = 0.0
        if not self._future.cancelled():
            failure = self._future.exception()
            if failure is None:
                result = _result_without_prompt(self._future.result())
                assert result is not None
                elapsed = result.completed_at - result.submitted_at
                latency = max(0.0, elapsed.total_seconds())
            elif isinstance(failure, NanoBananaError):
                error = failure
        return Resolved(
            provider=ref.provider if ref is not None else "",
            at=self._clock.now(),
            task_id=ref.task_id if ref is not None else None,
            key=self.key,
            account=self._emitter.account if self._emitter is not None else None,
            result=result,
            error=error,
            latency=latency,
            checks=0,
            callbacks=0,
        )

    def __await__(self) -> Generator[Any, None, ImageResult]:
        # A generator, not result()'s coroutine: one object less per waiting caller.
        future = self._future
        if not future.done():
            self._check_loop()
        while not future.done():
            check = self._handed
            if check is None:
                waiter: asyncio.Future[None] = future.get_loop().create_future()
                self._add_waiter(waiter)
                try:
                    yield from waiter
                except asyncio.CancelledError:
                    self._drop_waiter(waiter)
                    raise
                continue
            # Woken to send the task's due status check: sent from this task, its answer
            # resolves the task here, with no check task and no hand-over to wake this one.
            self._handed = None
            yield from check.run_here().__await__()
        return future.result()

    def _check_loop(self) -> None:
        # Awaited from another event loop (a second asyncio.run): asyncio's "attached to a
        # different loop" RuntimeError, or a wait nothing ends, as nothing here tracks it.
        loop = self._future.get_loop()
        if loop is not asyncio.get_running_loop():
            raise ConfigurationError(
                f"task {self.id} is tracked by a client on another event loop"
                f"{' (closed)' if loop.is_closed() else ''}: await it there, or resume it "
                "(client.resume(task.id, model=...)) with a Client created inside the running "
                "event loop"
            )

    def _add_waiter(self, waiter: asyncio.Future[None]) -> None:
        waiters = self._waiters
        if waiters is None:
            self._waiters = waiter
        elif isinstance(waiters, list):
            waiters.append(waiter)
        else:
            self._waiters = [waiters, waiter]

    def _drop_waiter(self, waiter: asyncio.Future[Any]) -> None:
        """A caller stopped waiting on ``waiter`` (cancelled): forget it, and give back a
        check handed to it that it did not take."""
        waiters = self._waiters
        if waiters is waiter:
            self._waiters = None
        elif isinstance(waiters, list) and waiter in waiters:
            waiters.remove(waiter)
            if len(waiters) <= 1:
                # Bare again: the one caller left is handed its checks (_take_check), not
                # sent them from a check task for every check to come.
                self._waiters = waiters[0] if waiters else None
        check = self._handed
        if check is not None and waiter.done() and not waiter.cancelled():
            # Woken to send a check and cancelled before it ran (the wake and the cancel in
            # one iteration): the scheduler must not go on believing it is in flight.
            self._handed = None
            check.give_back()

    def _taken_check(self) -> _Check | None:
        """The check handed to the caller that was just woken, to send now (None: none)."""
        check, self._handed = self._handed, None
        return check

    def _rewait(self) -> asyncio.Future[Any]:
        """A new waiter for a caller that sent a check and waits on (registered)."""
        waiter: asyncio.Future[None] = self._future.get_loop().create_future()
        self._add_waiter(waiter)
        return waiter

    def _take_check(self, check: _Check) -> bool:
        """Hand ``check`` to the one caller awaiting this task, to send in its own task;
        False when there is none (no caller, several, or one woken already): the scheduler
        sends it from a task of its own."""
        waiter = self._waiters
        if waiter is None or isinstance(waiter, list) or waiter.done():
            return False
        self._waiters = None
        self._handed = check
        waiter.set_result(None)
        return True

    def _unheard(self) -> bool:
        """Whether it waited for callers and every one of them was cancelled (a cancelled
        ``generate`` whose own clean-up has not run yet)."""
        waiters = self._waiters
        if waiters is None:
            return False
        if isinstance(waiters, asyncio.Future):
            return waiters.cancelled()
        return all(waiter.cancelled() for waiter in waiters)

    def _orphan(self) -> bool:
        """Mark its id as logged for a caller that went away: True the first time only, so
        each accepted task no caller hears is logged once, whichever path sees it first."""
        if self._orphaned or self._ref is None:
            return False
        self._orphaned = True
        return True

    # Called by the client and the scheduler only.
    def _accept(self, ref: TaskRef) -> None:
        self._ref = ref

    def _observe(self, status: TaskStatus) -> None:
        self._status = status

    def _resolve(self, result: ImageResult | None, error: BaseException | None) -> bool:
        if self._future.done():
            return False
        if error is not None:
            self._future.set_exception(error)
            # Retrieved here: a failed task nobody awaits must not log "exception was never
            # retrieved" (a done callback did this at one loop callback per task).
            self._future.exception()
        else:
            assert result is not None
            self._future.set_result(result)
        if self._updates is not None and self._emitter is not None:
            # Its Resolved event was emitted before this: the client may stop emitting. The
            # emitter is kept: a later on_update's failure is logged through it.
            self._emitter.unwatch()
        waiters, self._waiters = self._waiters, None
        self._handed = None  # a check handed and not taken: its entry ended, nothing to send
        if isinstance(waiters, asyncio.Future):
            waiters = [waiters]
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)
        return True
