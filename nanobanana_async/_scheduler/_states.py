"""The task state machine: where a tracked task stands (:class:`Phase`), what can happen to it
(:class:`Event`), and the table of which event moves which phase where (pure, no I/O).

Only the planner (``_plan``) moves an :class:`Entry`; the runner reads it.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Mapping
from typing import Final, Generic, TypeVar

import attrs

P = TypeVar("P")


class Phase(enum.Enum):
    """Where a tracked task stands. Only the planner moves it, by the table ``_STEPS``."""

    PLANNED = "planned"  # waits in the heap for its next check
    READY = "ready"  # due, waits for a request slot
    CHECKING = "checking"  # a status check is in flight
    RECHECK = "recheck"  # in flight, and a callback came meanwhile: check again at once
    DONE = "done"  # resolved, failed, expired or closed; its heap rows are stale

    # Members are singletons: hash by identity, not Enum's Python-level hash of the name (the
    # step table is looked up a few times per task).
    __hash__ = object.__hash__


class Event(enum.Enum):
    """What can happen to a tracked task."""

    DUE = "due"  # its check time came
    SEND = "send"  # a request slot was taken for its check
    HINT = "hint"  # a verified callback says it may have ended
    ANSWER = "answer"  # its check came back without ending it (running, or the check failed)
    END = "end"  # resolved, failed, expired or closed

    __hash__ = object.__hash__  # see Phase


_STEPS: Final[Mapping[tuple[Phase, Event], Phase]] = {
    (Phase.PLANNED, Event.DUE): Phase.READY,
    (Phase.PLANNED, Event.SEND): Phase.CHECKING,  # pulled forward by an idle request
    (Phase.PLANNED, Event.HINT): Phase.PLANNED,  # made due now
    (Phase.READY, Event.SEND): Phase.CHECKING,
    (Phase.READY, Event.HINT): Phase.READY,  # already due
    (Phase.CHECKING, Event.HINT): Phase.RECHECK,
    (Phase.RECHECK, Event.HINT): Phase.RECHECK,  # repeated callbacks cost one check at most
    (Phase.CHECKING, Event.ANSWER): Phase.PLANNED,
    (Phase.RECHECK, Event.ANSWER): Phase.PLANNED,
    **{(phase, Event.END): Phase.DONE for phase in Phase if phase is not Phase.DONE},
}


def step(phase: Phase, event: Event) -> Phase:
    """The phase after ``event``. Anything that happens to a finished task changes nothing (a
    late answer of a task already resolved); a step the table lacks is a bug.

    Raises:
        AssertionError: ``event`` cannot happen in ``phase``.
    """
    if phase is Phase.DONE:
        return phase
    after = _STEPS.get((phase, event))
    if after is None:
        raise AssertionError(f"a task cannot go from {phase.value} by {event.value}")
    return after


@attrs.define(eq=False, kw_only=True)
class Entry(Generic[P]):
    """One tracked task. Only the :class:`Planner` changes it.

    Attributes:
        payload: what the runner needs to poll and resolve it.
        group: the latency model's key, usually (provider, model).
        submitted: monotonic time of submit; of a resumed task, when the journal saw it
            accepted (the resume's own time when nothing recorded it).
        deadline: monotonic time after which the task times out.
        phase: where it stands (see :class:`Phase`).
        due: when it should next be checked.
        last_running: when it was last seen not finished.
        checks, failures, bad_responses: counters for this task.
        late: callbacks are expected, polling is only the safety net.
        probe: checked early and at growing ages while its model is learned.
        hinted: a callback made a check due, so the task ended just before it.
        claims: the states callbacks claimed so far; each costs at most one check, so replays
            of one callback (3,000 of them, say) never become a stream of checks.
        replaced: when the check a callback pulled forward was planned; a confirm that sees
            the task running goes back to that plan rather than starting one from now.
        min_gap: seconds at least between the submit and the first check and between checks
            (the provider's documented floor); no plan, callback or end-game goes below it.
        last_check: monotonic time the last check was sent (the submit before the first).
        resumed: tracked from a resume, not seen from its submit: its age is a record's, so
            its latency is learned only from the provider's own duration.
    """

    payload: P
    group: Hashable
    submitted: float
    deadline: float
    seq: int
    phase: Phase = Phase.PLANNED
    due: float = 0.0
    last_running: float = 0.0
    checks: int = 0
    failures: int = 0
    bad_responses: int = 0
    probe: bool = False
    late: bool = False
    hinted: bool = False
    claims: frozenset[Hashable] = frozenset()
    replaced: float = 0.0
    min_gap: float = 0.0
    last_check: float = 0.0
    resumed: bool = False

    @property
    def done(self) -> bool:
        """Resolved, failed, expired or closed."""
        return self.phase is Phase.DONE

    @property
    def in_flight(self) -> bool:
        """A status check of it is being sent or awaited."""
        return self.phase is Phase.CHECKING or self.phase is Phase.RECHECK
