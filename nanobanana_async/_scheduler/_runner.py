"""The scheduler runner: one loop per event loop (and clock) that sends every due status check
under its account's limits and resolves the tasks' futures (does I/O).

Only the runner resolves a submitted task. Every client on the loop shares it, and clients
using the same provider and key share one :class:`Account` (one request budget, one cap).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
import logging
import math
import weakref
from collections.abc import Callable, Hashable
from typing import ClassVar, Final, cast

from .._clock import MIN_AHEAD, Clock, MonotonicClock, Timer, timers
from .._config import DEFAULT_TASK_TIMEOUT, Limits, RetryPolicy
from .._errors import ClientClosedError, NanoBananaError, TaskTimeoutError
from .._limits import on_grid
from .._models import ImageResult, TaskRef, TaskState
from .._task import Task
from ..events import CallbackReceived, Resolved, _result_without_prompt
from ._account import Account, Connection, Tracked
from ._checks import Checker
from ._latency import Learned
from ._ledger import DEFAULT_HORIZON, Lease, Ledger
from ._memory import MEMORY, Key, LatencyMemory
from ._plan import LatencyModel, Phase, Planner

_log = logging.getLogger("nanobanana_async")
_Z_HORIZON: Final = 3.09  # the standard-normal score of the 99.9th percentile
# Tasks expired, made ready or sent per turn of the runner. Each turn runs in one iteration of
# the event loop, and the checks it starts run their first step in the next: 64 keeps both
# to a few milliseconds when thousands of checks come due at once (a burst of resumes, a
# restart), where all of them in one turn blocked the loop for ~40 ms per 10,000.
_TURN: Final = 64
_SPARE_BATCH: Final = 32  # checks pulled forward per look, at most
_SPARE_EVERY: Final = 0.05  # seconds between looks for checks to pull forward
_FAILED_TURN_RETRY: Final = 0.1  # seconds to the next turn after a turn hit a bug, doubling
_FAILED_TURN_MAX: Final = 5.0  # while every turn fails, up to this
# Off: handing due checks to the awaiting caller hung test_f48_kill_and_rerun_cycles_keep_the_cap
# (a task never checked again after a kill and rerun, about one run in two); not yet found.
CHECKS_IN_CALLER: Final = False


def _log_unheard(provider: str, unheard: list[tuple[TaskRef, str | None]]) -> None:
    """Say which pending tasks a closing client failed while no caller waited for them:
    their ClientClosedError reaches no one.

    Those without a journal go in one WARNING line, every id with how to resume it (the log
    is then the only place a paid task's id is kept). Those a journal holds are counted in
    one INFO line per journal naming it: their ids are there, and a client with that journal
    resumes them, so a WARNING (with a Ctrl-C, one per run) would only repeat the journal.
    """
    kept: dict[str, int] = {}
    unkept: list[TaskRef] = []
    for ref, journal in unheard:
        if journal is not None:
            kept[journal] = kept.get(journal, 0) + 1
        else:
            unkept.append(ref)
    for journal, count in kept.items():
        _log.info(
            "the client closed while %d accepted %s task(s) no caller waits for were pending: "
            "they run on and are paid for; their ids are in the journal %s, and a client with "
            "that journal resumes them",
            count,
            provider,
            journal,
        )
    if unkept:
        _log.warning(
            "the client closed while %d accepted %s task(s) no caller waits for were pending: "
            "%s; they run on and are paid for: get each result with "
            "client.resume(task_id, model=...)",
            len(unkept),
            provider,
            ", ".join(f"{ref.task_id} (model {ref.model})" for ref in unkept),
        )


def _recall_from(memory: LatencyMemory | None) -> Callable[[Hashable], Learned | None] | None:
    if memory is None:
        return None
    # Every group the scheduler plans is a Key (Connection.group).
    return lambda group: memory.recall(cast(Key, group))


class Scheduler:
    """The shared poll loop. Get it with :meth:`for_clock`; never construct it directly."""

    _registry: ClassVar[
        weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, Scheduler]]
    ] = weakref.WeakKeyDictionary()

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        # Learned models carry over between runs of the process only on the real clock: a
        # fake clock's seconds are not a server's, so such a run neither reads nor writes them.
        self._memory = MEMORY if isinstance(clock, MonotonicClock) else None
        # Its entries are all Tracked (see track()): one object per task.
        # Checks are planned on the wake grid: those due a few ms apart share a turn.
        self.plan: Planner[Task] = Planner(_recall_from(self._memory), grid=on_grid)
        self._accounts: dict[Hashable, Account] = {}
        self._clients = 0
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._call_at = timers(clock)
        # The one timer the runner turns on, and the clock time it is armed for (inf: none).
        self._timer: Timer | asyncio.Handle | None = None
        self._timer_at = math.inf
        self._checks: set[asyncio.Task[None]] = set()
        self.turns = 0  # turns of the runner so far (tests and benchmarks read it)
        self._started = 0  # status checks started so far
        self._failed_turns = 0  # turns in a row that raised
        self._spare_next = -math.inf
        self._provisional: dict[Hashable, list[tuple[Connection, Lease, float]]] = {}
        self._checker = Checker(
            self.plan,
            clock,
            resolve=self._resolve,
            abandon=self._abandon,
            nudge=self._nudge,
            learned=self._learned,
        )

    @classmethod
    def for_clock(cls, clock: Clock) -> Scheduler:
        """The scheduler of the running loop for ``clock``, created on first use."""
        loop = asyncio.get_running_loop()
        per_loop = cls._registry.setdefault(loop, {})
        scheduler = per_loop.get(id(clock))
        if scheduler is None:
            scheduler = per_loop[id(clock)] = cls(clock)
        return scheduler

    def account(
        self,
        key: Hashable,
        limits: Limits,
        policy: RetryPolicy,
        make_ledger: Callable[[], Ledger] | None = None,
        *,
        limits_known: bool = False,
    ) -> Account:
        """The account for ``key``; the first client's limits and policy set it up.

        ``make_ledger`` builds a shared ledger (Redis); by default it is in memory.
        ``limits_known``: the caller stated the account's limits, so a request the ledger
        has free is really free and may go to an earlier check (see :meth:`_spend_spare`).
        """
        account = self._accounts.get(key)
        if account is None:
            ledger = make_ledger() if make_ledger is not None else Ledger(limits, self.clock)
            account = self._accounts[key] = Account(ledger, policy, self.clock)
            # Its creates waiting for a turn are woken by this runner's one timer.
            ledger.dispense_through(self._arm)
            account.limits_known = limits_known
        elif account.ledger.configured != limits:
            _log.warning("clients of one account disagree on limits; the first client's apply")
        return account

    def attach(self) -> None:
        """A client starts using the scheduler. Its timer and the status checks it sends live
        from the first client to the last (:meth:`detach`)."""
        self._clients += 1
        self._loop()

    async def detach(self) -> None:
        """A client stopped; with the last client the timer is dropped and the checks still
        in flight are cancelled and awaited."""
        self._clients -= 1
        if self._clients > 0:
            return
        for account in self._accounts.values():
            await account.ledger.aclose()
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, math.inf
        checks = list(self._checks)
        for check in checks:
            check.cancel()
        if checks:
            # wait(), not gather(): their CancelledError must not read as this task's, which
            # may already be cancelling (aclose in `async with` after Ctrl-C) and must still
            # go on to close the sessions. A check never raises (Checker.poll).
            await asyncio.wait(checks)
            self._checks.difference_update(checks)

    # ----------------------------------------------------------------- tracking

    def track(
        self,
        task: Task,
        *,
        ref: TaskRef,
        conn: Connection,
        lease: Lease | None,
        submitted_wall: float,
        timeout: float,
        late: bool = False,
        resumed: bool = False,
        submitted: float | None = None,
    ) -> Tracked:
        """Start polling a submitted task until it ends or ``timeout`` seconds pass.

        ``lease`` is its slot, released when it ends; ``submitted_wall`` when it was accepted
        (wall clock). ``late`` (callbacks on): the first check waits until the 95th
        percentile of learned latency, so polling is only the safety net for a lost callback.
        ``resumed``: submitted earlier, at ``submitted`` (monotonic) when a record says (see
        :meth:`Planner.add`).
        """
        now = self.clock.now()
        driver = conn.driver
        made = self.plan.add(
            task,
            make=functools.partial(
                Tracked,
                ref=ref,
                conn=conn,
                lease=lease,
                submitted_wall=submitted_wall,
                runner=self,
            ),
            group=conn.group(ref.model),
            now=now,
            deadline=now + timeout,
            first_poll=driver.first_poll,
            poll_interval=driver.poll_interval,
            late=late,
            pressure=conn.account.pressure,
            min_gap=driver.min_check_gap,
            resumed=resumed,
            submitted=submitted,
        )
        # typing.cast is a call at run time, once per task: make built a Tracked.
        entry: Tracked = made  # type: ignore[assignment]
        conn.entries.add(entry)
        conn.account.entries.add(entry)
        at = self.plan.next_wakeup()  # _nudge(), inline: once per task
        if at < self._timer_at:
            self._arm(at)
        return entry

    def hint(self, entry: Tracked, claimed: TaskState | None = None) -> bool:
        """A verified callback says the task may have ended: check it now, once.

        The callback is never the truth; the check that follows resolves the task. Repeated
        callbacks claiming the same state cost at most one extra check. True when this made a
        check come sooner.
        """
        tracked = entry
        tracked.callbacks += 1
        emitter = tracked.conn.emitter
        if emitter.active:
            emitter.emit(
                CallbackReceived(
                    provider=tracked.ref.provider,
                    at=self.clock.now(),
                    task_id=tracked.ref.task_id,
                    key=tracked.task.key,
                    account=emitter.account,
                    state=claimed if claimed is not None else TaskState.UNKNOWN,
                ),
                tracked.task,
            )
        if not self.plan.hint(entry, self.clock.now(), claimed):
            return False
        self._nudge()
        return True

    def poll_normally(self, entry: Tracked) -> None:
        """The callback receiver hears nothing: poll ``entry`` as if it expected no callback."""
        if self.plan.poll_normally(entry, self.clock.now()):
            self._nudge()

    def horizon(self, conn: Connection, group: Hashable, submitted: float) -> float:
        """When a task submitted at ``submitted`` has surely ended on the provider.

        The model's learned p99.9 latency after the submit (``DEFAULT_HORIZON`` before this
        run learned it: a slot freed too early lets the provider see one task too many, and
        an earlier run's latencies may be stale, most likely when the provider is overloaded
        and creates fail ambiguously), capped by the client's task timeout.
        """
        model = self._horizon_model(group)
        latency = model.quantile(_Z_HORIZON) if model is not None else DEFAULT_HORIZON
        return submitted + min(latency, conn.timeouts.task or DEFAULT_TASK_TIMEOUT)

    def hold_to_horizon(
        self, conn: Connection, lease: Lease, group: Hashable, submitted: float
    ) -> None:
        """Keep ``lease`` until the task's horizon. Before the model is learned the horizon is
        the conservative default; it is shortened once the model is learned."""
        conn.account.ledger.slots.hold_until(lease, self.horizon(conn, group, submitted))
        if self._horizon_model(group) is None:
            self._provisional.setdefault(group, []).append((conn, lease, submitted))

    def _horizon_model(self, group: Hashable) -> LatencyModel | None:
        model = self.plan.learned_model(group)
        return model if model is not None and model.learned_here else None

    def _learned(self, group: Hashable) -> None:
        # A task of ``group`` finished: once its model is learned, it is remembered for later
        # runs of the process (after every completion, so a loop that is never closed cleanly
        # still leaves it), and holds made on the default horizon get the real one.
        model = self.plan.learned_model(group)
        if model is None:
            return
        if self._memory is not None:
            # Not typing.cast (a call per task): the runner's groups are Keys (Connection.group).
            self._memory.remember(group, model.snapshot())  # type: ignore[arg-type]
        if group not in self._provisional or not model.learned_here:
            return
        for conn, lease, submitted in self._provisional.pop(group, []):
            # A lease whose task a rerun tracks again is freed when the task ends, not at a
            # horizon that may have passed already while the task still runs.
            if lease.held and lease.until is not None:
                conn.account.ledger.slots.hold_until(lease, self.horizon(conn, group, submitted))

    def _abandon(self, entry: Tracked, error: BaseException) -> None:
        """End a task the client stops watching though it may still run on the provider
        (closed, expired, or its check hit a bug): its slot stays until its horizon, or the
        account could go a task over its cap."""
        try:
            self._hold_to_horizon(entry)
        except Exception:
            # Never leave the caller waiting for ever over a failed hold.
            _log.exception("could not hold task %s's slot", entry.ref.task_id)
        finally:
            self._resolve(entry, error=error)

    def _hold_to_horizon(self, entry: Tracked) -> None:
        tracked = entry
        lease, tracked.lease = tracked.lease, None
        if lease is not None:
            self.hold_to_horizon(tracked.conn, lease, entry.group, entry.submitted)

    def stop_checking(self, conn: Connection) -> None:
        """A client starts closing: send no more checks of its tasks, and fail its callers
        waiting for a task slot (:meth:`close_connection` then fails its pending tasks)."""
        conn.closing = True
        conn.account.ledger.slots.fail(
            conn, ClientClosedError("the client was closed while waiting for a task slot")
        )

    async def close_connection(self, conn: Connection) -> None:
        """Fail every pending task of a closing client with ClientClosedError.

        Its tasks keep their slots until their horizon (they still run on the provider).
        Thousands pending are failed a share per loop iteration, so the loop keeps serving the
        process's other work meanwhile; none of them is checked again (:meth:`stop_checking`).
        """
        if not conn.closing:
            self.stop_checking(conn)
        unheard: list[tuple[TaskRef, str | None]] = []
        try:
            while conn.entries:
                for entry in list(itertools.islice(conn.entries, _TURN * 4)):
                    self._close_entry(entry, unheard)
                if conn.entries:
                    # A yield, not a wait: nothing to time, so not through the clock.
                    await asyncio.sleep(0)
        finally:
            # Cancelled meanwhile (a second Ctrl-C): no caller is left waiting on a closed
            # client, so the rest fail at once.
            for entry in list(conn.entries):
                self._close_entry(entry, unheard)
            if unheard:
                _log_unheard(conn.driver.name, unheard)

    def _close_entry(
        self, entry: Tracked, unheard: list[tuple[TaskRef, str | None]] | None = None
    ) -> None:
        ref = entry.ref
        task = entry.task
        # Its caller was cancelled in this same loop turn and has not logged the id yet:
        # the ClientClosedError below reaches no one, so the close names it (once).
        if unheard is not None and task._unheard() and task._orphan():
            unheard.append((ref, task._journal))
        self._abandon(
            entry,
            ClientClosedError(
                f"client closed while task {ref.task_id} was pending; resume it by id",
                task_id=ref.task_id,
                model=ref.model,
            ),
        )

    # ----------------------------------------------------------------- the loop

    def _wake(self) -> None:
        """The timer's callback: one turn of the runner, then the timer armed for the next.

        Whatever a turn raises is logged and the timer armed again: scheduling never stops
        silently, and every task still ends by its deadline at the latest.
        """
        self._timer = None
        armed_for, self._timer_at = self._timer_at, math.inf
        now = self.clock.now()
        if now < armed_for:
            # Fired before its time (uvloop's timers run on a cached, whole-millisecond
            # clock): decide by the clock, not by the timer's promise.
            self._arm(armed_for, now)
            return
        self.turns += 1
        try:
            wakeup, worked = self._turn(now)
            self._failed_turns = 0
        except Exception:
            # Backing off: a bug that fails every turn must not flood the log or the loop.
            self._failed_turns += 1
            retry = min(_FAILED_TURN_MAX, _FAILED_TURN_RETRY * 2 ** (self._failed_turns - 1))
            _log.exception("scheduler turn failed; trying again in %.1f s", retry)
            wakeup, worked = now + retry, False
        if wakeup <= now and not worked:
            # Something claims to be due but nothing could go: a timer, not a spin.
            wakeup = now + MIN_AHEAD
        self._arm(wakeup, now)

    def _turn(self, now: float) -> tuple[float, bool]:
        """Expire, make ready, hand queued creates their turns, send the checks the budget
        allows; returns when the next turn is due and whether this one did anything."""
        started = self._started
        planned = self.plan.turn(now, _TURN)
        expired, due = cast(list[Tracked], planned[0]), cast(list[Tracked], planned[1])
        wakeup = planned[2]
        for entry in expired:
            self._expire(entry)
        for entry in due:
            account = entry.conn.account
            ready = account.ready
            # A check a callback asked for is the likeliest to free a task slot.
            if entry.hinted:
                ready.appendleft(entry)
            else:
                ready.append(entry)
            if entry.deadline < account.ready_deadline:
                account.ready_deadline = entry.deadline
        handed = 0
        for account in self._accounts.values():
            ledger = account.ledger
            if ledger.creates_waiting:
                # Creates first: their turns are handed out before the checks take any.
                dispensed = ledger.dispensed
                wakeup = min(wakeup, ledger.dispense(now))
                handed += ledger.dispensed - dispensed
            if account.ready:
                wakeup = min(wakeup, self._drain(account, now))
            account.update_pressure(now, backlogged=bool(account.ready))
        wakeup = min(wakeup, self._spend_spare(now))
        return wakeup, bool(expired or due or handed) or self._started != started

    def _arm(self, at: float, now: float | None = None) -> None:
        """Make the runner turn at ``at``: the one timer is moved only when ``at`` is earlier
        than the wake it is armed for (``at`` at or before now: the loop's next iteration)."""
        if at >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        if now is None:
            now = self.clock.now()
        self._timer_at = at
        if at <= now:
            self._timer = self._loop().call_soon(self._wake)
        else:
            # Never less than MIN_AHEAD ahead: uvloop fires shorter timers at once.
            self._timer = self._call_at(max(at, now + MIN_AHEAD), self._wake)

    def _loop(self) -> asyncio.AbstractEventLoop:
        loop = self._event_loop
        if loop is None:
            loop = self._event_loop = asyncio.get_running_loop()
        return loop

    def _start_check(self, entry: Tracked, now: float) -> None:
        self.plan.sent(entry, now)
        self._started += 1
        # The caller awaiting the task sends the check in its own task when there is one:
        # no task to start, and the answer resolves the task where its caller waits (a check
        # task's end woke the caller in one more iteration of the loop). Anyone else (no
        # caller waiting, several, callbacks or webhooks only) gets a check task.
        if CHECKS_IN_CALLER and entry.payload._take_check(entry):
            return
        self._spawn_check(entry)

    def _spawn_check(self, entry: Tracked) -> None:
        self._checks.add(self._loop().create_task(self._check(entry)))

    async def _check(self, entry: Tracked) -> None:
        # The check forgets itself as it ends rather than by a done callback: one loop
        # callback less per request (detach() forgets those cancelled before they started).
        try:
            await self._checker.poll(entry)
        finally:
            # Not typing.cast (a call per check): the current task is this check's own.
            self._checks.discard(asyncio.current_task())

    async def check_here(self, entry: Tracked) -> None:
        """Send ``entry``'s check (its request slot taken) in the calling task: the caller
        the check was handed to. A caller cancelled during it re-raises ``CancelledError``,
        and the check is planned again, due now: the runner takes it a new request slot (the
        first may have been sent) and sends it from a task of its own if no caller waits."""
        if not entry.conn.account.ledger.take_send():
            # It would wait for room in the send log (a stall's backlog): from a check task,
            # so the caller waits on the task itself and hears a close at once (the check
            # task is cancelled then, and never sends on the closed transport).
            self._spawn_check(entry)
            return
        try:
            # Counted by take_send just now: poll sends with no await before it.
            await self._checker.poll(entry, counted=True)
        except asyncio.CancelledError:
            if entry.phase is Phase.CHECKING or entry.phase is Phase.RECHECK:
                self.plan.retry(entry, self.clock.now())
                self._nudge()
            raise

    def give_back(self, entry: Tracked) -> None:
        """The caller ``entry``'s check was handed to was cancelled before sending it: it
        goes from a task of its own now, on the request slot already taken for it."""
        phase = entry.phase
        if (phase is Phase.CHECKING or phase is Phase.RECHECK) and not entry.conn.closing:
            self._spawn_check(entry)

    def _drain(self, account: Account, now: float) -> float:
        """Send the account's waiting checks while request slots are free now.

        Returns when the next slot frees (``inf`` when nothing waits; ``now`` when a turn's
        worth was sent and more may go).
        """
        if now >= account.ready_deadline:
            self._expire_waiting(account, now)
        ready = account.ready
        ledger = account.ledger
        ledger.demand(len(ready))
        sent = 0
        while ready:
            if sent == _TURN:
                return now
            entry = ready[0]
            if entry.phase is not Phase.READY or entry.conn.closing:
                ready.popleft()  # ended (or checked) while it waited, or its client closes
                continue
            if not ledger.try_take_request(now):
                # Waiting for a request slot (a 429's pause) ends at the deadline at the latest.
                # On the wake grid: the checks that wait wake once for the requests freed
                # by then (each still goes at or after its slot frees).
                return min(on_grid(ledger.next_request_free()), account.ready_deadline)
            ready.popleft()
            self._start_check(entry, now)
            sent += 1
        account.ready_deadline = math.inf
        return math.inf

    def _expire_waiting(self, account: Account, now: float) -> None:
        """Expire the account's checks whose deadline came while they waited for a request
        slot: a few hundred per turn, the rest on the next (a ready task has no row in the
        plan, which expires only planned ones). Rare: a wait as long as a task's deadline."""
        kept: collections.deque[Tracked] = collections.deque()
        expired = 0
        soonest = math.inf
        for entry in account.ready:
            if entry.phase is not Phase.READY:
                continue  # ended or sent meanwhile
            if entry.deadline <= now and expired < _TURN * 4:
                expired += 1
                self._expire(entry)
                continue
            kept.append(entry)
            soonest = min(soonest, entry.deadline)
        account.ready = kept
        account.ready_deadline = soonest

    def _spend_spare(self, now: float) -> float:
        """Pull planned checks forward while an account's request budget is idle now.

        A request is free *now* only while no create waits in the account's queue for its
        turn (``try_take_request`` refuses then), so it is one no prompt is waiting for: once
        the last prompt is sent, or while prompts wait for task slots, the budget goes to
        seeing finished tasks sooner, which ends them (and frees their slots) sooner.
        Returns when to look again (``inf``: nothing to pull forward).
        """
        spare = [a for a in self._accounts.values() if a.spends_spare and not a.ready and a.entries]
        if not spare:
            return math.inf
        if now < self._spare_next:
            return self._spare_next
        # At most one look per _SPARE_EVERY: each look scores candidates against their
        # models, and the loop turns for every answer (the first cut, run on every turn, cost
        # a third more CPU per request).
        self._spare_next = now + _SPARE_EVERY
        entries, wakeup = self.plan.spare(now, _SPARE_BATCH)
        for entry in cast(list[Tracked], entries):
            account = entry.conn.account
            if account not in spare or entry.conn.closing:
                continue
            if not account.ledger.try_take_request(now):
                wakeup = min(wakeup, account.ledger.next_request_free())
                continue
            self._start_check(entry, now)
        return max(wakeup, self._spare_next)

    def _nudge(self) -> None:
        """Turn the runner sooner if a change made something due before its armed wake-up."""
        at = self.plan.next_wakeup()
        if at < self._timer_at:
            self._arm(at)

    def _expire(self, entry: Tracked) -> None:
        ref = entry.ref
        self._abandon(
            entry,
            TaskTimeoutError(
                "deadline passed before the task finished; it may still finish, resume it by id",
                task_id=ref.task_id,
                provider=ref.provider,
                model=ref.model,
            ),
        )

    def _resolve(
        self,
        entry: Tracked,
        *,
        result: ImageResult | None = None,
        error: BaseException | None = None,
    ) -> None:
        tracked = entry
        if entry.phase is not Phase.DONE:  # a check's record_done finished it already
            self.plan.finish(entry)
        tracked.conn.entries.discard(entry)
        tracked.conn.account.entries.discard(entry)
        if tracked.lease is not None:
            lease, tracked.lease = tracked.lease, None
            tracked.conn.account.ledger.slots.release(lease)
        emitter = tracked.conn.emitter
        if emitter.active:
            # Before the future: a task's on_update hears its end before its awaiter does.
            emitter.emit(
                Resolved(
                    provider=tracked.ref.provider,
                    at=self.clock.now(),
                    task_id=tracked.ref.task_id,
                    key=tracked.task.key,
                    account=emitter.account,
                    result=_result_without_prompt(result),
                    error=error if isinstance(error, NanoBananaError) else None,
                    latency=self.clock.now() - entry.submitted,
                    checks=entry.checks,
                    callbacks=tracked.callbacks,
                ),
                tracked.task,
            )
        tracked.payload._resolve(result, error)  # its Task (``task`` property: a call more)
