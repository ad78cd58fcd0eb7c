"""A Router's follower: one task handle for a prompt whose task may be hedged on another account
or resubmitted there after it failed, resolved by the first result (does I/O through the
clients)."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._dispatch import Dispatcher
from ._errors import (
    ClientClosedError,
    ContentPolicyError,
    GenerationFailedError,
    NanoBananaError,
    SubmitOutcomeUnknownError,
)
from ._models import ImageRequest, ImageResult
from ._routing import Attempt, Hedge, describe
from ._task import Task

_log = logging.getLogger("nanobanana_async")

_Run = Callable[[Task, int, bool], None]


class _HedgeSend:
    """Whether a hedge's create may still go out: only while its prompt has no result. Asked
    by the client right before the send, so it also records that the create went out.

    ``running``: the tasks followed for the prompt. One that has its result ends the hedge
    even before the follower (a few loop turns later) hands it to ``outer``."""

    def __init__(self, outer: Task, running: Mapping[asyncio.Future[ImageResult], object]) -> None:
        self._outer = outer
        self._running = running
        self.sent = False  # a create of this hedge went out: its task may exist (and be paid)

    def wanted(self) -> bool:
        if self._outer.done() or any(_succeeded(future) for future in self._running):
            return False
        self.sent = True
        return True


def _stand_for(outer: Task, task: Task) -> None:
    # The caller's task takes the id of the accepted task it now stands for, and the journal
    # holding that id (set before the client returned it): a caller that leaves then loses
    # nothing, so log_orphaned notes the journal at INFO instead of warning with the id.
    if task.ref is not None:
        outer._accept(task.ref)
        outer._journal = task._journal


def _succeeded(future: asyncio.Future[ImageResult]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


class Follower:
    """Follows router tasks to their end, with hedging and resubmits.

    Args:
        hedge: the hedging policy, or None.
        resubmit: submit a task that failed after acceptance again elsewhere.
    """

    def __init__(self, dispatch: Dispatcher, *, hedge: Hedge | None, resubmit: bool) -> None:
        self._dispatch = dispatch
        self._hedge = hedge
        self._resubmit = resubmit
        self._jobs: set[asyncio.Future[None]] = set()
        self._outers: set[Task] = set()
        self.resubmits = 0
        self.hedges = 0
        self._hedges_sending = 0  # hedge creates sent and not yet answered
        self.hedges_won = 0
        self.losers_ended = 0

    def follow(
        self,
        first: Task,
        index: int,
        request: ImageRequest,
        key: str | None,
        eligible: Sequence[int],
        tried: set[int],
        attempts: list[Attempt],
    ) -> Task:
        """The caller's task for ``first`` (accepted on account ``index``): it resolves with
        the first result of ``first``, its hedge or its resubmit."""
        outer = Task(request, key, self._dispatch.clock)
        outer._emitter = self._dispatch.events
        _stand_for(outer, first)
        outer.attempts = tuple(attempts)
        self._outers.add(outer)
        job = asyncio.ensure_future(
            self._race(outer, first, index, request, key, eligible, tried, attempts)
        )
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)
        return outer

    async def aclose(self) -> None:
        """Stop following; tasks still pending fail with ``ClientClosedError`` and their ids."""
        outers = list(self._outers)
        jobs = [job for job in self._jobs if not job.done()]
        for job in jobs:
            job.cancel()
        if jobs:
            await asyncio.wait(jobs)
        for outer in outers:
            ref = outer.ref
            outer._resolve(
                None,
                ClientClosedError(
                    "the router closed while this task was pending",
                    task_id=ref.task_id if ref else None,
                    model=ref.model if ref else None,
                ),
            )
        self._outers.clear()

    def _hedge_at(self, index: int, request: ImageRequest) -> float:
        # When a task just accepted on ``index`` gets a hedge: never before the account learned
        # the model's latency (its quantiles mean nothing before).
        model = self._dispatch.latency_model(index, request)
        if self._hedge is None or model is None:
            return math.inf
        return self._dispatch.clock.now() + model.quantile(self._hedge.z)

    async def _hedge_now(
        self,
        outer: Task,
        request: ImageRequest,
        key: str | None,
        eligible: Sequence[int],
        tried: set[int],
        attempts: list[Attempt],
        run: _Run,
        send: _HedgeSend,
    ) -> None:
        hedge, dispatch = self._hedge, self._dispatch
        if (
            hedge is None
            or outer.done()
            # Hedges still being sent count too: several tasks pass their p99 at once.
            or not hedge.allows(self.hedges + self._hedges_sending, dispatch.accepted)
            or not dispatch.open_to(eligible, tried)
        ):
            return
        self._hedges_sending += 1
        try:
            task, where = await self._dispatch.route(
                request, key, eligible, tried, attempts, hedge=True, wanted=send.wanted
            )
        except SubmitOutcomeUnknownError as exc:
            # The hedge may have been created (and paid): it counts against max_share, and
            # the user hears of it. Its outcome is the account's, not the caller's.
            self.hedges += 1
            _log.warning("a hedge of task %s may have been created: %s", outer.id, exc)
            return
        except NanoBananaError as exc:
            # No other account takes it now: the first task goes on alone.
            _log.debug("no hedge for task %s: %s", outer.id, exc)
            return
        finally:
            self._hedges_sending -= 1
        self.hedges += 1
        run(task, where, True)

    async def _race(
        self,
        outer: Task,
        first: Task,
        index: int,
        request: ImageRequest,
        key: str | None,
        eligible: Sequence[int],
        tried: set[int],
        attempts: list[Attempt],
    ) -> None:
        # Follows the task (and its hedge or resubmit) to the end; resolves ``outer`` once.
        dispatch = self._dispatch
        running: dict[asyncio.Future[ImageResult], tuple[Task, int, bool]] = {}

        def run(task: Task, at: int, hedged: bool) -> None:
            running[task._future] = (task, at, hedged)
            dispatch.watch(task, at)
            # The caller's on_update hears each task followed for it.
            outer._sources = [*(outer._sources or ()), task]
            if outer._updates is not None:
                task.on_update(outer._notify)

        run(first, index, False)
        hedge_at = self._hedge_at(index, request)
        # The hedge's submit runs beside the tasks: a slot wait there never delays a result.
        hedging: asyncio.Future[None] | None = None
        send = _HedgeSend(outer, running)
        last: BaseException | None = None
        try:
            while running or (hedging is not None and not hedging.done()):
                waits: set[asyncio.Future[Any]] = set(running)
                alarm = None
                if hedge_at < math.inf and not outer.done():
                    alarm = asyncio.ensure_future(dispatch.clock.sleep_until(hedge_at))
                    waits.add(alarm)
                if hedging is not None and not hedging.done():
                    waits.add(hedging)
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if alarm is not None:
                    alarm.cancel()
                    if alarm in done:
                        hedge_at = math.inf
                        hedging = asyncio.ensure_future(
                            self._hedge_now(
                                outer, request, key, eligible, tried, attempts, run, send
                            )
                        )
                for future in [f for f in running if f.done()]:
                    task, at, hedged = running.pop(future)
                    if outer.done():
                        self.losers_ended += 1  # paid for too: followed to its end
                        continue
                    if future.cancelled():
                        error: BaseException | None = ClientClosedError("the task was cancelled")
                    else:
                        error = future.exception()
                    if error is None:
                        _stand_for(outer, task)
                        self.hedges_won += hedged
                        outer.attempts = tuple(attempts)
                        outer._resolve(future.result(), None)
                        continue
                    name = dispatch.accounts[at].name
                    attempts.append(Attempt(account=name, outcome=describe(error)))
                    last = error
                    if running or (hedging is not None and not hedging.done()):
                        continue  # the other task may still win
                    again = await self._resubmit_after(
                        error, request, key, eligible, tried, attempts
                    )
                    if isinstance(again, tuple):
                        task, where = again
                        _stand_for(outer, task)
                        outer.attempts = tuple(attempts)
                        run(task, where, False)
                        hedge_at = self._hedge_at(where, request)
                        continue
                    last = again
                    break
                if outer.done() and hedging is not None and not hedging.done() and not send.sent:
                    # The result is in before the hedge's create went out: stop its wait for a
                    # slot or the window (its create would not be sent anyway).
                    hedging.cancel()
            if not outer.done() and last is not None:
                if isinstance(last, NanoBananaError):
                    last.attempts = tuple(attempts)
                outer._resolve(None, last)
        except Exception as exc:
            # A bug here must not leave the caller waiting for ever.
            _log.exception("following task %s failed", outer.id)
            outer._resolve(None, exc)
        finally:
            if hedging is not None and not hedging.done():
                hedging.cancel()
            self._outers.discard(outer)

    async def _resubmit_after(
        self,
        error: BaseException,
        request: ImageRequest,
        key: str | None,
        eligible: Sequence[int],
        tried: set[int],
        attempts: list[Attempt],
    ) -> tuple[Task, int] | BaseException:
        # The resubmitted task, or the error the caller gets: a content refusal is final (the
        # same prompt would be refused again), and so is any failure but a generation failure.
        if not (
            self._resubmit
            and isinstance(error, GenerationFailedError)
            and not isinstance(error, ContentPolicyError)
            and self._dispatch.open_to(eligible, tried)
        ):
            return error
        try:
            again = await self._dispatch.route(request, key, eligible, tried, attempts)
        except NanoBananaError as exc:
            return exc
        self.resubmits += 1
        return again
