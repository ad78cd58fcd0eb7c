"""The poll planner: which tasks to check when, learned from completion times (pure, no I/O).

Tasks sit in one time-ordered heap keyed by their next check, which is never after their
deadline: the same row that makes a check due expires the task once its deadline has come (a
task waiting for a request slot is the runner's to expire). First checks and intervals start
from the provider's documented advice and, once a (provider, model) has finished enough tasks,
follow the learned lognormal distribution of its durations: checks fall at fixed steps of the
distribution's quantiles, so a task is checked densely where tasks tend to finish and rarely
elsewhere. Ties go to the older task, so under a tight budget older tasks are checked first.
"""

from __future__ import annotations

import collections
import heapq
import math
from collections.abc import Callable, Hashable
from typing import Final, Generic, TypeVar

from ._latency import MIN_SAMPLES, PROBE_GROWTH, PROBE_START, LatencyModel, Learned
from ._states import Entry, Event, Phase, step

__all__ = ("PROBES", "Entry", "Event", "LatencyModel", "Phase", "Planner", "step")

P = TypeVar("P")

# More probes than samples needed: the model is learned from the fastest few, not the slowest.
PROBES: Final = 3  # tasks per (provider, model) checked on a geometric schedule while unlearned
_LATE_PRESSURE: Final = 3.0
# A check pulled forward by idle budget comes at least this share of the median duration after
# the task's last check: more often sees nothing new, and each check costs the client CPU and
# a request. Idle budget is not free (issue 22, item 5): at a tenth, a large budget doubled the
# checks per task (2.1 to 4.0 on a fake clock, T = 1.75 s, sigma 0.5) to cut the median lag
# from 0.27 T to 0.11 T; at a quarter it costs +35% checks for a lag of 0.17 T.
_SPARE_GAP_FRACTION: Final = 0.25
_SPARE_GAP_MIN: Final = 0.05  # seconds
# An idle request goes to a task only if it has at least this chance of having finished since
# its last check: below it the check most likely sees "running" and only costs CPU.
_SPARE_MIN_CHANCE: Final = 0.2
# A task past this standard score of its model's durations (the slowest 10%) that is checked
# early is looked at again as soon as it may go: the runner turns rarely once few tasks are
# left, and the slowest of a run's last tasks decides its end (scenario 1 on a fake clock: the
# last task, 8 s against a 1.55 s median, was seen 1 s late between the plan's checks a median
# apart). Only the tail: elsewhere the plan's own checks come often enough, and a lone task
# looked at so would be checked every quarter of the median through its likeliest finish.
_Z_TAIL: Final = 1.28
# While a model is still being learned, idle budget makes up to this many more of its tasks
# probes, checked from 1/16 of the advice's first check at doubling ages, as the probes are.
# The model is learned once three tasks are seen finished: from the three probes alone that
# waits for the slowest of three (scenario 1, T = 1.75 s against a 10 s advice: learned at
# 5 s, the first hundred tasks seen up to 4.7 s late); from 19, for about the third fastest.
# Bounded: at most four checks each before the advice, 64 per model (24 growing 1.5x instead
# cost a roomy flow of 200 tasks 0.6 checks a task, and bought no more in scenario 1).
_SPARE_PROBES: Final = 16
_REPLAN_CHUNK: Final = 256  # first checks moved to a newly learned model per call
_STALE_ROWS_PER_CALL: Final = 256  # see Planner.next_wakeup
_NO_GROUP: Final = object()  # no group's model looked up yet (see Planner.spare)
# Read from the table once: looked up per task on the hot path, the step costs a call.
_DUE_PHASE: Final = step(Phase.PLANNED, Event.DUE)
_END_PHASE: Final = step(Phase.CHECKING, Event.END)


class Planner(Generic[P]):
    """Deadlines and check times of every pending task; never sleeps, never awaits.

    Args:
        recall: what an earlier run learned about a group, asked once when the group's model
            is created (None: every model starts from the provider's advice).
        grid: rounds a planned check's time up (never down, never past the task's deadline),
            so checks due close together come due at one time; None: planned as computed.
    """

    def __init__(
        self,
        recall: Callable[[Hashable], Learned | None] | None = None,
        *,
        grid: Callable[[float], float] | None = None,
    ) -> None:
        self._recall = recall
        self._grid = grid
        # One row per planned task (its next check, at the latest its deadline), plus stale rows
        # left by moves and ends. A ready task has none: the runner, which holds it until a
        # request slot is free, expires it if its deadline comes first.
        self._due: list[tuple[float, int, Entry[P]]] = []
        self._models: dict[Hashable, LatencyModel] = {}
        # Popped from the heap and not yet handed out by due() / expire() (see _pop).
        self._ready: list[Entry[P]] = []
        self._expired: list[Entry[P]] = []
        self._replans: collections.deque[
            tuple[Hashable, LatencyModel, list[tuple[float, int, Entry[P]]]]
        ] = collections.deque()
        self._seq = 0
        self.pending = 0

    def model(self, group: Hashable, first_poll: float, poll_interval: float) -> LatencyModel:
        """The latency model of ``group``, created on first use from what an earlier run
        learned, else from the provider's advice."""
        model = self._models.get(group)
        if model is None:
            model = self._models[group] = LatencyModel(first_poll, poll_interval)
            learned = self._recall(group) if self._recall is not None else None
            if learned is not None:
                model.carry_over(learned)
        return model

    def learned_model(self, group: Hashable) -> LatencyModel | None:
        """The latency model of ``group`` once it is learned, else None."""
        model = self._models.get(group)
        return model if model is not None and model.learned else None

    def add(
        self,
        payload: P,
        *,
        group: Hashable,
        now: float,
        deadline: float,
        first_poll: float,
        poll_interval: float,
        late: bool = False,
        pressure: float = 1.0,
        min_gap: float = 0.0,
        resumed: bool = False,
        submitted: float | None = None,
        make: Callable[..., Entry[P]] | None = None,
    ) -> Entry[P]:
        """Track a task submitted at ``now``; its first check follows the learned model.

        ``make`` builds the entry from its fields (a subclass carrying what its owner needs
        too: one object per task, not an entry and a payload); by default an :class:`Entry`.

        ``resumed``: a task submitted earlier, at ``submitted`` as far as a record tells (else
        ``now``): checked at its age, and its latency learned only from the provider's own
        duration (its interval seen from the resume would teach the model a shorter one).
        """
        self._seq += 1
        born = now if submitted is None else min(now, submitted)
        entry = (make or Entry)(
            payload=payload,
            group=group,
            submitted=born,
            deadline=deadline,
            seq=self._seq,
            last_running=born,
            min_gap=min_gap,
            last_check=now,
            resumed=resumed,
        )
        model = self.model(group, first_poll, poll_interval)
        entry.late = late
        # Callbacks teach the model without probing; only polled tasks probe.
        if not late and not model.learned and model.probes < PROBES:
            model.probes += 1
            entry.probe = True
        first = model.first_check(late=late, probe=entry.probe, pressure=pressure)
        self.pending += 1
        self.schedule(entry, max(now, born + first))
        return entry

    def schedule(self, entry: Entry[P], at: float) -> None:
        """Make ``entry`` due at ``at``, or at its provider's minimum gap if that is later;
        never after its deadline (the row then expires it)."""
        # Comparisons, not min()/max(): this runs for every planned check.
        floor = entry.last_check + entry.min_gap
        if at < floor:
            at = floor
        if self._grid is not None:
            at = self._grid(at)
        if at > entry.deadline:
            at = entry.deadline
        entry.due = at
        heapq.heappush(self._due, (at, entry.seq, entry))

    def due(self, now: float, limit: float = math.inf) -> list[Entry[P]]:
        """Pop the planned entries due at or before ``now`` (at most ``limit``, and at most
        ``4 * limit`` rows looked at, stale ones included), earliest (then oldest) first; they
        are then ready, waiting for a request slot. Entries whose deadline has come are kept
        for :meth:`expire` instead."""
        self._pop(now, limit)
        out = self._ready[: int(min(limit, len(self._ready)))]
        del self._ready[: len(out)]
        return out

    def _pop(self, now: float, limit: float) -> None:
        # Rows at or before now: a planned check becomes ready, or expires its task when the
        # deadline has come. A task with a check in flight has no row: its answer plans it (at
        # its deadline at the latest) and the row that leaves expires it then, so an overdue
        # check never makes the runner spin.
        ready, expired = self._ready, self._expired
        rows = 4 * limit  # a replan leaves a stale row per task it moved: thousands at once
        heap = self._due
        while heap and heap[0][0] <= now and len(ready) < limit and len(expired) < limit:
            if rows <= 0:
                return
            rows -= 1
            at, _, entry = heapq.heappop(heap)
            if entry.phase is not Phase.PLANNED or at != entry.due:
                continue
            if now < entry.deadline:
                entry.phase = _DUE_PHASE
                ready.append(entry)
            elif entry not in expired:  # two rows at one time (moved there twice)
                expired.append(entry)

    def spare(self, now: float, limit: int) -> tuple[list[Entry[P]], float]:
        """Checks worth pulling forward while the request budget is idle, and when to look again.

        Up to ``limit`` live entries planned for later, likeliest first: by the learned
        model's chance that the task finished since its last check, and only those with at
        least a 20% chance, each at least a quarter of the model's median (and its provider's
        floor) after its last check. Tasks that expect a callback are left to their plan; a few
        tasks of a model still being learned are probed (at most 16 per model, see
        ``_spare_probe``).

        Returns:
            the entries, and when to look again (``inf``: nothing is running to pull forward).
        """
        # (-chance, seq, entry, when it may be pulled forward again if checked now)
        scored: list[tuple[float, int, Entry[P], float]] = []
        retry_at = math.inf
        last_seq = -1
        # Most candidates share a group: its model and gap floor are looked up once per run of
        # one group, not per candidate (a look scores up to 128 of them every 50 ms).
        group: Hashable = _NO_GROUP
        model: LatencyModel | None = None
        floor = 0.0
        tail = math.inf
        for at, seq, entry in _smallest(self._due, max(4 * limit, 64)):
            if at <= now or entry.late or at != entry.due or entry.phase is not Phase.PLANNED:
                continue
            if seq == last_seq:
                continue  # a task planned twice for the same time is one check, not two
            last_seq = seq  # rows come sorted by (time, seq): a task's twin rows are adjacent
            if entry.group is not group:
                group = entry.group
                model = self._models.get(group)
                if model is not None and model.learned:
                    floor = max(_SPARE_GAP_MIN, _SPARE_GAP_FRACTION * model.median)
                    tail = model.quantile(_Z_TAIL)
                elif model is not None:
                    floor = -1.0  # being learned: probe instead (see _spare_probe)
            if model is None:
                continue
            if floor < 0.0:
                probe_at = self._spare_probe(model, entry, now)
                if probe_at <= now:
                    # Unscored: below every learned task's chance (0.2 or more), oldest first;
                    # checked now, its next probe is at twice its age.
                    again = now + (PROBE_GROWTH - 1.0) * (now - entry.submitted)
                    scored.append((0.0, seq, entry, again))
                else:
                    retry_at = min(retry_at, probe_at)
                continue
            gap = max(entry.min_gap, floor)
            eligible = entry.last_check + gap
            if eligible > now:
                retry_at = min(retry_at, eligible)
                continue
            submitted = entry.submitted
            chance = model.chance_finished(entry.last_running - submitted, now - submitted)
            if chance >= _SPARE_MIN_CHANCE:
                again = now + gap if now - submitted >= tail else math.inf
                scored.append((-chance, seq, entry, again))
            else:
                retry_at = min(retry_at, now + gap)
        scored.sort()
        chosen: list[Entry[P]] = []
        for _, _, entry, again in scored:
            if len(chosen) == limit:
                retry_at = now  # more are worth a check now: the runner's next look
                break
            model = self._models[entry.group]
            if not entry.probe and not model.learned:
                if model.probes >= PROBES + _SPARE_PROBES:
                    continue  # the room for probes was taken by older tasks of this look
                # From here its plan follows a probe's ages (LatencyModel.next_check).
                entry.probe = True
                model.probes += 1
            chosen.append(entry)
            # Look again when it may go again: once no other task keeps the runner turning
            # (the last tasks of a run), nothing else would look before its planned check.
            retry_at = min(retry_at, again)
        return chosen, retry_at

    @staticmethod
    def _spare_probe(model: LatencyModel, entry: Entry[P], now: float) -> float:
        """When a task of a model still being learned may be probed with idle budget: a probe
        at twice its age at its last check (the first at 1/16 of the advice's first check),
        a task not yet a probe only while the model has room for more; ``inf``: never (and
        for a resumed task)."""
        if entry.resumed or (not entry.probe and model.probes >= PROBES + _SPARE_PROBES):
            return math.inf  # a resumed task's age is a record's: its own plan checks it
        submitted = entry.submitted
        seen = entry.last_check - submitted if entry.checks else 0.0
        age = max(model.prior_first * PROBE_START, PROBE_GROWTH * seen)
        if age >= model.prior_first:
            return math.inf  # the advice's cadence from here: the plan's own checks
        return max(submitted + age, entry.last_check + entry.min_gap)

    def sent(self, entry: Entry[P], now: float) -> None:
        """A request slot was taken at ``now`` for a check of ``entry`` (ready, or planned and
        pulled forward)."""
        entry.phase = step(entry.phase, Event.SEND)
        entry.checks += 1
        entry.last_check = now

    def hint(self, entry: Entry[P], now: float, claim: Hashable = None) -> bool:
        """A verified callback says the task may have ended: make its check due now, once.

        ``claim`` is what the callback says (its claimed state): a claim already made for this
        task asks for nothing more, so a callback replayed any number of times costs at most
        one check (README, RELIABILITY.md F12), whatever the checks in between saw.

        Returns True when this made a check come sooner; a check in flight is followed by one
        more at once, and a check already due stays where it is.
        """
        before = entry.phase
        if before is Phase.DONE or claim in entry.claims:
            return False
        entry.claims |= {claim}
        entry.hinted = True
        entry.phase = step(before, Event.HINT)
        if before is not Phase.PLANNED or entry.due <= now:
            return False
        entry.replaced = entry.due
        self.schedule(entry, now)
        return True

    def poll_normally(self, entry: Entry[P], now: float) -> bool:
        """Callbacks are not getting through: plan ``entry`` as a task that expects none.

        Its next check moves to where polling alone would put it (never before ``now``); a
        check in flight plans the next one so when its answer comes. Returns True when the
        next check moved earlier.
        """
        if entry.done or not entry.late:
            return False
        entry.late = False
        if entry.phase is not Phase.PLANNED:
            return False
        model = self._models[entry.group]
        if entry.checks == 0:
            at = entry.submitted + model.first_check(probe=entry.probe)
        else:
            seen = entry.last_running - entry.submitted
            at = entry.submitted + model.next_check(seen, probe=entry.probe)
        at = min(max(at, now), entry.deadline)
        if at >= entry.due:
            return False
        self.schedule(entry, at)
        return True

    def retry(self, entry: Entry[P], at: float) -> None:
        """A check failed without an answer: check again at ``at``, never past the deadline
        (the deadline expires the task instead)."""
        entry.phase = step(entry.phase, Event.ANSWER)
        self.schedule(entry, min(at, entry.deadline))

    def rebase(self, entry: Entry[P], submitted: float) -> None:
        """A resumed task's answer says when the provider created it (monotonic
        ``submitted``): its age counts from then, not from a record or the resume."""
        if entry.resumed:
            entry.submitted = submitted
            entry.last_running = min(entry.last_running, submitted)

    def record_running(self, entry: Entry[P], now: float, pressure: float = 1.0) -> None:
        """A check saw the task still running: plan the next check, at once if a callback
        came while it was in flight."""
        recheck = entry.phase is Phase.RECHECK
        entry.phase = step(entry.phase, Event.ANSWER)
        entry.last_running = now
        if recheck:
            self.schedule(entry, now)
            return
        model = self._models[entry.group]
        if entry.late:
            pressure = _LATE_PRESSURE  # a lost callback costs a delay, not a stream of checks
        age = now - entry.submitted
        at = entry.submitted + model.next_check(age, probe=entry.probe, pressure=pressure)
        # A confirm a callback pulled forward, seeing the task running, does not move the plan
        # earlier: the next check is the one planned before the callback, or later.
        at, entry.replaced = max(at, entry.replaced), 0.0
        self.schedule(entry, min(at, entry.deadline))

    def record_done(self, entry: Entry[P], now: float, elapsed: float | None = None) -> None:
        """A check saw the task finished: learn from it and stop tracking it.

        ``elapsed`` is the provider's own duration, used when it fits the observed interval.
        """
        low, high = entry.last_running - entry.submitted, now - entry.submitted
        model = self._models[entry.group]
        if entry.resumed:
            # Its submit was never seen: only the provider's own duration is a latency.
            if elapsed is None or elapsed <= 0.0:
                self.finish(entry)
                return
            low = high = elapsed
        elif elapsed is not None and 0.0 < elapsed <= high:
            low = high = elapsed
        elif entry.hinted:
            low = high  # the callback came when the task ended; this check followed at once
        model.observe(low, high)
        self.finish(entry)
        if model.samples == MIN_SAMPLES:
            self._replan_first_checks(entry.group, model)

    def _replan_first_checks(self, group: Hashable, model: LatencyModel) -> None:
        # Tasks submitted before the model was learned wait on the provider's advice; move
        # their first check to what the learned model says (once per group, O(pending), a
        # chunk now and the rest a chunk per turn of the runner: see replan()).
        self._replans.append((group, model, list(self._due)))
        self.replan()

    def replan(self, limit: int = _REPLAN_CHUNK) -> bool:
        """Move up to ``limit`` first checks still waiting on a provider's advice to what a
        newly learned model says. Returns True while more are left (the runner calls it on
        every turn, so thousands of waiting tasks never block the loop at once)."""
        seen = 0
        while self._replans and seen < limit:
            group, model, rows = self._replans[0]
            while rows and seen < limit:
                at, _, entry = rows.pop()
                seen += 1
                # Tasks expecting a callback keep the advice: an early model is biased low
                # (the first completions are the fastest); for them an early check is waste.
                if (
                    entry.group == group
                    and not entry.late
                    and entry.phase is Phase.PLANNED
                    and entry.checks == 0
                    and at == entry.due
                ):
                    first = min(entry.submitted + model.first_check(), entry.deadline)
                    if first != entry.due:
                        self.schedule(entry, first)
            if not rows:
                self._replans.popleft()
        return bool(self._replans)

    def finish(self, entry: Entry[P]) -> None:
        """Stop tracking ``entry`` (resolved, failed, expired or detached)."""
        if entry.phase is not Phase.DONE:
            entry.phase = _END_PHASE  # the table's step for an end from any live phase
            self.pending -= 1

    def expire(self, now: float, limit: float = math.inf) -> list[Entry[P]]:
        """Pop live entries whose deadline has passed and that have no check in flight (at
        most ``limit``). One with a check in flight waits for its answer, which plans it at
        its deadline, so the next call expires it then. Entries found due meanwhile are kept
        for :meth:`due`."""
        self._pop(now, limit)
        out = self._expired[: int(min(limit, len(self._expired)))]
        del self._expired[: len(out)]
        # Ended since they were popped (resolved by another path): nothing to expire.
        return [entry for entry in out if not entry.done]

    def turn(self, now: float, limit: int) -> tuple[list[Entry[P]], list[Entry[P]], float]:
        """One turn of the runner's planning at ``now``, at most ``limit`` of each kind: the
        entries whose deadline passed, the entries now due (ready), and when to plan again
        (``now`` while more of either, or of a replan, is left for the next turn)."""
        self._pop(now, limit)
        expired = self.expire(now, limit)
        due = self.due(now, limit)
        # Replanned before the wake-up is read, so it sees the checks the replan moved earlier.
        more = self.replan()
        wakeup = self.next_wakeup()
        # Rows left at or before now (the turn's share was taken) are the next turn's.
        return expired, due, now if more or wakeup <= now else wakeup

    def next_wakeup(self) -> float:
        """The earliest time something is due or expires (``inf`` when nothing is), or an
        earlier one while stale rows are still being cleared from the heads (at most 256 per
        call: a replan or a burst of ends leaves thousands, and clearing them in one call
        blocked the loop for ~10 ms per 10,000; the early wake-up clears the next share)."""
        stale = _STALE_ROWS_PER_CALL
        # A row counts only for a planned entry at that time: one sent early (end-game) or
        # already ready left its row behind.
        if self._ready or self._expired:
            return -math.inf  # popped, not yet handed out: the next turn takes them
        heap = self._due
        planned = Phase.PLANNED
        while heap:
            at, _, entry = heap[0]  # a planned check (or deadline) of a live task?
            if entry.phase is planned and at == entry.due:
                return at
            if not stale:
                return at
            heapq.heappop(heap)
            stale -= 1
        return math.inf


def _smallest(heap: list[tuple[float, int, Entry[P]]], k: int) -> list[tuple[float, int, Entry[P]]]:
    """The ``k`` smallest rows of ``heap``, smallest first, walking the heap from its root
    (O(k log k), where ``heapq.nsmallest`` reads every row)."""
    out: list[tuple[float, int, Entry[P]]] = []
    if not heap:
        return out
    size = len(heap)
    # The frontier holds (time, seq, index): flat keys compare cheaper than nested rows.
    frontier: list[tuple[float, int, int]] = [(heap[0][0], heap[0][1], 0)]
    push, pop = heapq.heappush, heapq.heappop
    while frontier and len(out) < k:
        i = pop(frontier)[2]
        out.append(heap[i])
        child = 2 * i + 1
        if child < size:
            row = heap[child]
            push(frontier, (row[0], row[1], child))
            child += 1
            if child < size:
                row = heap[child]
                push(frontier, (row[0], row[1], child))
    return out
