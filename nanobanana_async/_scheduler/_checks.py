"""One status check: send it, read the answer, and perform what it means for the task and its
account (does I/O). What an answer means is decided by pure code: :func:`decide_check` for a
failed check, :func:`ending` for a status, the planner's transitions for the task's phase.

Only the scheduler's runner starts checks; a check resolves its task through the runner's
``resolve``, never the task's future directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from typing import Final, Protocol

from .._backoff import delay
from .._clock import Clock
from .._errors import APIError, BadResponseError, ClientClosedError, NanoBananaError
from .._models import ImageResult, TaskState, TaskStatus
from .._task import Task
from ..events import Checked, RateLimited, Retrying, _cause
from ._account import Account, Tracked
from ._decide import CheckLater, FailAccount, PauseAccount, decide_check
from ._outcome import ending
from ._plan import Planner
from ._states import Phase

_log = logging.getLogger("nanobanana_async")
_seen_unknown: set[tuple[str, str]] = set()
_LATE_DELAY_CAP: Final = 120.0  # a poll's Retry-After beyond this falls back to backoff


class Resolve(Protocol):
    """Ends a tracked task with a result or an error (the runner's)."""

    def __call__(
        self,
        entry: Tracked,
        *,
        result: ImageResult | None = None,
        error: BaseException | None = None,
    ) -> None: ...


class Checker:
    """Sends status checks for the runner and performs their outcomes.

    Args:
        resolve: ends a task (the runner's; it releases the slot and resolves the future).
        abandon: ends a task that may still run on the provider (the runner's; its slot stays
            until the task's horizon).
        nudge: wakes the runner when a change made something due sooner.
        learned: told the group of every finished task (the runner shortens provisional holds).
    """

    def __init__(
        self,
        plan: Planner[Task],
        clock: Clock,
        *,
        resolve: Resolve,
        abandon: Callable[[Tracked, BaseException], None],
        nudge: Callable[[], None],
        learned: Callable[[Hashable], None],
    ) -> None:
        self._plan = plan
        self._clock = clock
        self._resolve = resolve
        self._abandon = abandon
        self._nudge = nudge
        self._learned = learned

    async def poll(self, entry: Tracked, *, counted: bool = False) -> None:
        """Check ``entry`` once (its request slot is taken); never raises. ``counted``: the
        caller counted the send in the send log already (:meth:`Ledger.take_send`).

        One flat coroutine per check (send, mask, parse, then plan or resolve): a coroutine
        more per request was measurable CPU at thousands of checks a second.
        """
        tracked = entry
        conn = tracked.conn
        try:
            try:
                ledger = conn.account.ledger
                # Counted here when the send log has room (one window look and the count in
                # one call), or already by the caller it was handed to (see check_here).
                if not counted and not ledger.take_send():
                    # Its turn was taken in the runner's turn; requests due since (a stall
                    # of the loop wakes them together) filled the window first: it waits
                    # for the oldest to leave rather than go as the window's one too many.
                    await ledger.wait_send_room()
                    if entry.phase is Phase.DONE:
                        # Ended meanwhile (its client closed: the transport may be closed
                        # too, and a send would reopen it after aclose returned).
                        return
                    ledger.note_send()
                conn.account.checks += 1
                sent = entry.last_check
                response = await conn.transport.send(
                    conn.driver.build_status(tracked.ref), timeout=conn.timeouts.request
                )
                if _log.isEnabledFor(logging.DEBUG):
                    _log.debug(
                        "%s task %s: status check HTTP %d in %.0f ms",
                        tracked.ref.provider,
                        tracked.ref.task_id,
                        response.status,
                        (self._clock.now() - sent) * 1000,
                    )
                status = conn.driver.parse_status(response, tracked.ref)
            except NanoBananaError as exc:
                if entry.phase is not Phase.DONE:
                    self._failed(entry, exc)
                return
            if entry.phase is Phase.DONE:
                # Ended while the check was on the wire (its client closed, its deadline
                # passed): a late answer changes nothing, and nothing is to be planned.
                return
            conn.account.budget.refund()
            entry.failures = 0
            entry.bad_responses = 0
            self._observe(entry, status)
            # What was learned may have moved other tasks' checks earlier than the runner's
            # sleep.
            self._nudge()
        except Exception as exc:
            # A bug must fail the one task loudly, never the runner and every other task; the
            # task may still run on the provider.
            _log.exception("unexpected error checking task %s", tracked.ref.task_id)
            if not tracked.payload.done():  # ended meanwhile (closed): its end was said once
                self._abandon(entry, exc)

    def _failed(self, entry: Tracked, exc: NanoBananaError) -> None:
        # The check got no usable answer: what that means is decide_check's.
        tracked = entry
        conn = tracked.conn
        if isinstance(exc, ClientClosedError):
            # Its transport's session was closed under it (nothing was sent): the task may
            # still run on the provider, so it keeps its slot and its id goes with the error.
            exc.task_id, exc.model = tracked.ref.task_id, tracked.ref.model
            self._abandon(entry, exc)
            return
        if isinstance(exc, BadResponseError):
            entry.bad_responses += 1
        match decide_check(exc, entry.bad_responses, conn.policy):
            case PauseAccount(retry_after=hint):
                self._rate_limited(entry, hint)
            case FailAccount() if isinstance(exc, APIError):
                self._fail_account(conn.account, exc)
            case CheckLater(after_timeout=after_timeout):
                self._retry_later(entry, after_timeout=after_timeout, cause=_cause(exc))
            case _:
                if isinstance(exc, APIError):
                    exc.task_id = tracked.ref.task_id
                self._resolve(entry, error=exc)

    def _observe(self, entry: Tracked, status: TaskStatus) -> None:
        # Not done (poll() returned before for a resolved task).
        tracked = entry
        task = tracked.payload  # the Task (not the ``task`` property: a call per answer)
        task._observe(status)
        now = self._clock.now()
        ref = tracked.ref
        conn = tracked.conn
        emitter = conn.emitter
        if emitter.active:
            emitter.emit(
                Checked(
                    provider=ref.provider,
                    at=now,
                    task_id=ref.task_id,
                    key=task.key,
                    account=emitter.account,
                    state=status.state,
                    queue_position=None,  # no provider's status answer says it (PROTOCOLS.md)
                    checks=entry.checks,
                ),
                task,
            )
        if entry.resumed and status.created is not None:
            # The provider's own create time is the task's age, better than any record's.
            wall = conn.wall_clock()
            created = min(wall, status.created)
            tracked.submitted_wall = created
            self._plan.rebase(entry, now - (wall - created))
        end = ending(
            status,
            ref,
            task.request,
            submitted_wall=tracked.submitted_wall,
            now_wall=conn.wall_clock(),
        )
        if end is not None:
            self._plan.record_done(entry, now, status.elapsed)
            self._learned(entry.group)
            if isinstance(end, ImageResult):
                self._resolve(entry, result=end)
            else:
                self._resolve(entry, error=end)
            return
        if status.state is TaskState.UNKNOWN and (ref.provider, status.raw_state) not in (
            _seen_unknown
        ):
            _seen_unknown.add((ref.provider, status.raw_state))
            _log.warning(
                "%s sent unknown task state %r; polling on", ref.provider, status.raw_state
            )
        self._plan.record_running(entry, now, conn.account.pressure)

    def _retrying(self, entry: Tracked, now: float, cause: str, wait: float) -> Retrying:
        tracked = entry
        return Retrying(
            provider=tracked.ref.provider,
            at=now,
            task_id=tracked.ref.task_id,
            key=tracked.task.key,
            account=tracked.conn.emitter.account,
            operation="status",
            cause=cause,
            delay=wait,
            attempt=entry.checks + 1,  # the check that follows, counted over the task
        )

    def _retry_later(self, entry: Tracked, *, after_timeout: bool, cause: str) -> None:
        conn = entry.conn
        now = self._clock.now()
        entry.failures += 1
        model = self._plan.model(entry.group, conn.driver.first_poll, conn.driver.poll_interval)
        wait = model.next_check(now - entry.submitted) - (now - entry.submitted)
        if conn.account.budget.try_spend(after_timeout=after_timeout):
            wait = delay(entry.failures - 1, conn.policy, conn.random)
        emitter = conn.emitter
        if emitter.active:
            emitter.emit(self._retrying(entry, now, cause, max(wait, 0.0)), entry.task)
        self._plan.retry(entry, now + max(wait, 0.0))
        self._nudge()

    def _rate_limited(self, entry: Tracked, retry_after: float | None) -> None:
        conn = entry.conn
        now = self._clock.now()
        conn.account.rate_limited += 1
        wait = retry_after
        # Retry-After 0 (or none) would pause nothing: the next check would meet the same full
        # window at once. Back off instead, at least a second: one bounded pause per episode.
        if wait is None or wait <= 0 or wait > _LATE_DELAY_CAP:
            entry.failures += 1
            wait = max(delay(entry.failures - 1, conn.policy, conn.random), 1.0)
        # A 429 cools down the whole account, not just this task.
        about_cap = conn.account.ledger.rate_limited(retry_after=retry_after, creating=False)
        events = conn.account.events
        if events.active:
            events.emit(
                RateLimited(
                    provider=events.provider,
                    at=now,
                    scope="tasks" if about_cap else "window",
                    retry_after=retry_after,
                    operation="status",
                )
            )
        if conn.emitter.active:
            conn.emitter.emit(self._retrying(entry, now, "429", wait), entry.task)
        conn.account.ledger.pause(wait)
        self._plan.retry(entry, now + wait)
        self._nudge()

    def _fail_account(self, account: Account, exc: APIError) -> None:
        # An auth or credit refusal applies to every task of the account: fail them all now
        # rather than each at its deadline.
        for entry in list(account.entries):
            ref = entry.ref
            error = type(exc)(
                exc.message,
                provider=exc.provider,
                status=exc.status,
                code=exc.code,
                task_id=ref.task_id,
                request_id=exc.request_id,
                body=exc.body,
            )
            self._resolve(entry, error=error)
