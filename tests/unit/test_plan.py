"""The poll planner: ordering, deadlines, probing and learning, with bare floats."""

from __future__ import annotations

import heapq
import itertools
import math
import random
from typing import Any

import pytest

from nanobanana_async._scheduler._latency import CARRIED_SAMPLES, LatencyModel, Learned
from nanobanana_async._scheduler._plan import PROBES, Event, Phase, Planner, _smallest, step


def _add(plan: Planner[str], name: str, now: float, deadline: float = 1000.0) -> object:
    return plan.add(
        name, group="g", now=now, deadline=now + deadline, first_poll=10.0, poll_interval=3.0
    )


def test_probes_then_prior_for_the_rest() -> None:
    """The first few tasks of a model probe early; later ones wait for the documented advice."""
    plan: Planner[str] = Planner()
    entries = [_add(plan, f"t{i}", 0.0) for i in range(PROBES + 2)]
    dues = [e.due for e in entries]  # type: ignore[attr-defined]
    assert dues[:PROBES] == [10.0 / 16] * PROBES
    assert dues[PROBES:] == [10.0, 10.0]


def test_a_model_carried_over_skips_advice_and_probes() -> None:
    """A group an earlier run learned starts from that model: its first task is checked at the
    learned quantile, not probed from the advice; the earlier run is asked once per group."""
    asked: list[object] = []
    learned = Learned(mean=math.log(4.0), var=0.04, samples=50)

    def recall(group: object) -> Learned | None:
        asked.append(group)
        return learned if group == "g" else None

    plan: Planner[str] = Planner(recall)
    first = _add(plan, "a", 0.0)
    _add(plan, "b", 0.0)
    other = plan.add("c", group="h", now=0.0, deadline=100.0, first_poll=10.0, poll_interval=3.0)
    # Counted as ten samples, its spread (0.2) is still drawn towards the wide prior.
    sigma = math.sqrt((10 * 0.04 + 5 * 0.5**2) / 15)
    assert first.due == pytest.approx(4.0 * math.exp(-0.5 * sigma))  # type: ignore[attr-defined]
    assert other.due == 10.0 / 16  # nothing carried over: probed from the advice
    assert asked == ["g", "h"]


def test_a_carried_model_counts_as_a_few_samples_so_drift_is_followed() -> None:
    """However many tasks the earlier run saw, ten of this run's outweigh it: a server twice
    as slow now moves the median most of the way within those ten tasks."""
    model = LatencyModel(10.0, 3.0)
    model.carry_over(Learned(mean=math.log(10.0), var=0.01, samples=200))
    assert model.learned
    assert model.samples == CARRIED_SAMPLES
    for _ in range(CARRIED_SAMPLES):
        model.observe(20.0, 20.0)
    # Equal weight to both runs: sqrt(10 * 20) = 14.1 s (counted as 200 samples: 10.3 s).
    assert model.median == pytest.approx(math.sqrt(200.0))


def test_due_orders_by_time_then_age_and_skips_finished() -> None:
    """Due entries come earliest first, older first on ties; finished ones never come back."""
    plan: Planner[str] = Planner()
    _a, b, _c = (_add(plan, n, 0.0) for n in "abc")
    plan.finish(b)  # type: ignore[arg-type]
    assert [e.payload for e in plan.due(2.0)] == ["a", "c"]
    assert plan.due(100.0) == []
    assert plan.pending == 2


def test_expire_and_next_wakeup() -> None:
    """An entry past its deadline is expired once; its check is never planned after the
    deadline, so the wakeup is the earliest check or deadline (one heap row per task)."""
    plan: Planner[str] = Planner()
    entry = _add(plan, "a", 0.0, deadline=0.5)  # its first check would be at 10 / 16 s
    assert plan.next_wakeup() == 0.5
    assert plan.expire(0.49) == []
    assert plan.due(0.49) == []
    assert [e.payload for e in plan.expire(0.5)] == ["a"]
    plan.finish(entry)  # type: ignore[arg-type]
    assert plan.expire(6.0) == []
    assert math.isinf(plan.next_wakeup())
    assert len(plan._due) == 0


def test_learning_replans_waiting_first_checks() -> None:
    """Once a model is learned, tasks still waiting on the 10 s advice are moved earlier."""
    plan: Planner[str] = Planner()
    probes = [_add(plan, f"p{i}", 0.0) for i in range(PROBES)]
    waiting = _add(plan, "w", 0.0)
    assert waiting.due == 10.0  # type: ignore[attr-defined]
    for entry in probes:
        plan.record_done(entry, 1.25, elapsed=1.0)  # type: ignore[arg-type]
    assert waiting.due < 2.0  # type: ignore[attr-defined]


def test_learned_schedule_checks_near_the_finish() -> None:
    """With a learned lognormal, most tasks are found within a fraction of the median."""
    rng = random.Random(1)
    model = LatencyModel(10.0, 3.0)
    for _ in range(200):
        d = rng.lognormvariate(math.log(2.0), 0.4)
        model.observe(d, d)
    assert model.median == pytest.approx(2.0, rel=0.15)
    lags, checks = [], []
    for _ in range(500):
        d = rng.lognormvariate(math.log(2.0), 0.4)
        t, n = model.first_check(), 1
        while t < d:
            t, n = model.next_check(t), n + 1
        lags.append(t - d)
        checks.append(n)
    assert sum(lags) / len(lags) < 0.35 * 2.0
    assert sum(checks) / len(checks) < 3.0


def test_a_callback_during_a_check_asks_for_one_more_check_at_once() -> None:
    """A callback that arrives while the task's check is in flight (the check may have seen it
    running a moment before it ended) makes one more check due as soon as the answer comes;
    more callbacks meanwhile cost nothing more."""
    plan: Planner[str] = Planner()
    plan.model("g", 10.0, 3.0).observe(5.0, 5.0)  # keeps the entry off the probe schedule
    entry = plan.add("a", group="g", now=0.0, deadline=100.0, first_poll=10.0, poll_interval=3.0)
    assert [e.payload for e in plan.due(10.0)] == ["a"]
    plan.sent(entry, 10.0)
    assert plan.hint(entry, 10.1) is False  # in flight: nothing to move now
    assert plan.hint(entry, 10.2) is False
    plan.record_running(entry, 10.5)
    assert entry.due == 10.5
    assert [e.payload for e in plan.due(10.5)] == ["a"]
    plan.sent(entry, 10.5)
    plan.record_running(entry, 11.0)
    assert entry.due == 11.0 + 3.0  # no callback this time: back to the plan


def test_a_callback_makes_a_planned_check_due_now_once() -> None:
    """A callback moves a check planned for later to now; one already due stays where it is,
    and a finished task ignores callbacks."""
    plan: Planner[str] = Planner()
    entry = _add(plan, "a", 0.0)
    assert plan.hint(entry, 0.25) is True  # type: ignore[arg-type]
    assert entry.due == 0.25  # type: ignore[attr-defined]
    assert plan.hint(entry, 0.3) is False  # type: ignore[arg-type]
    assert [e.payload for e in plan.due(0.3)] == ["a"]
    assert plan.hint(entry, 0.4) is False  # type: ignore[arg-type]
    plan.finish(entry)  # type: ignore[arg-type]
    assert plan.hint(entry, 0.5) is False  # type: ignore[arg-type]


def test_a_claim_costs_one_check_and_its_confirm_keeps_the_plan() -> None:
    """Issue 20, item 12c: a callback claiming a state already claimed asks for nothing; one
    claiming another state asks once more; a confirm that sees the task running goes back to
    the check planned before the callback, not to a new plan from now."""
    plan: Planner[str] = Planner()
    plan.model("g", 10.0, 3.0).observe(5.0, 5.0)  # keeps the entry off the probe schedule
    entry = plan.add(
        "a", group="g", now=0.0, deadline=100.0, first_poll=10.0, poll_interval=3.0, late=True
    )
    planned = entry.due
    assert planned == 10.0  # expecting a callback: the provider's advice
    assert plan.hint(entry, 1.0, "succeeded") is True
    assert [e.payload for e in plan.due(1.0)] == ["a"]
    plan.sent(entry, 1.0)
    plan.record_running(entry, 1.2)
    assert entry.due == planned
    for now in (1.3, 1.4, 1.5):  # replays of the same claim
        assert plan.hint(entry, now, "succeeded") is False
    assert entry.due == planned
    assert plan.hint(entry, 1.6, "running") is True  # another claim: one more check
    assert plan.hint(entry, 1.7, "running") is False


def test_steps_the_table_lacks_are_bugs_and_a_finished_task_stays_finished() -> None:
    """The task state machine: an answer for a task never sent, or a send of a task already in
    flight, raises; anything after the end changes nothing."""
    assert step(Phase.PLANNED, Event.DUE) is Phase.READY
    with pytest.raises(AssertionError, match="ready by answer"):
        step(Phase.READY, Event.ANSWER)
    with pytest.raises(AssertionError, match="checking by send"):
        step(Phase.CHECKING, Event.SEND)
    assert all(step(Phase.DONE, event) is Phase.DONE for event in Event)
    assert all(step(phase, Event.END) is Phase.DONE for phase in Phase)


def test_the_soonest_planned_checks_come_from_the_top_of_the_heap() -> None:
    """The end-game reads only the soonest planned checks, and reads them in order: the same
    rows, in the same order, as sorting the whole heap would give."""
    rng = random.Random(7)
    for size in (0, 1, 5, 300):
        heap: list[tuple[float, int, Any]] = [(rng.random(), i, None) for i in range(size)]
        heapq.heapify(heap)
        for k in (0, 1, 64, 400):
            assert _smallest(heap, k) == sorted(heap)[:k]


def test_the_soonest_rows_keep_ties_in_order_and_twin_rows_together() -> None:
    """Rows at one time come oldest first, and a task planned twice for one time gives two
    adjacent rows (the spare look counts them as one check)."""
    rng = random.Random(11)
    entries = [object() for _ in range(50)]
    heap: list[tuple[float, int, Any]] = []
    for seq, entry in enumerate(entries):
        at = float(rng.randrange(4))
        for _ in range(rng.choice((1, 2))):
            heapq.heappush(heap, (at, seq, entry))
    rows = _smallest(heap, len(heap))
    assert [row[:2] for row in rows] == sorted(row[:2] for row in heap)
    for before, after in itertools.pairwise(rows):
        if before[1] == after[1]:
            assert before[2] is after[2]


def test_a_turn_wakes_for_the_first_checks_its_replan_moved_earlier() -> None:
    """A turn that finishes replanning first checks on a newly learned model wakes the runner
    for the earliest of them, not for what was due before the replan."""
    plan: Planner[int] = Planner()
    add = {"group": "g", "deadline": 600.0, "first_poll": 10.0, "poll_interval": 3.0}
    probes = [plan.add(i, now=0.0, **add) for i in range(PROBES)]  # type: ignore[arg-type]
    rest = [plan.add(i, now=0.2 * i, **add) for i in range(300)]  # type: ignore[arg-type]
    now = 6.5
    for entry in probes[:3]:  # the third finish teaches the model; a first chunk is replanned
        plan.due(now)
        plan.sent(entry, now)
        plan.record_done(entry, now, elapsed=1.5)
    _, _, wakeup = plan.turn(now, 64)
    earliest = min(entry.due for entry in rest if entry.phase is Phase.PLANNED)
    assert wakeup <= max(earliest, now)


def test_an_overdue_task_with_a_check_out_neither_spins_nor_blocks_other_deadlines() -> None:
    """A task whose deadline passes while its check is in flight waits for that answer, then
    expires; meanwhile it is no reason to wake (the runner would spin until the answer) and
    the deadlines after it still expire on time."""
    plan: Planner[str] = Planner()
    a = _add(plan, "a", 0.0, deadline=5.0)
    b = _add(plan, "b", 0.0, deadline=6.0)
    assert [e.payload for e in plan.due(1.5)] == ["a", "b"]
    plan.sent(a, 1.5)  # type: ignore[arg-type]
    plan.sent(b, 1.5)  # type: ignore[arg-type]
    plan.record_running(b, 1.5)  # type: ignore[arg-type]
    assert [e.payload for e in plan.expire(7.0)] == ["b"]  # a's check is still out
    plan.finish(b)  # type: ignore[arg-type]  # the runner resolves what expired
    assert plan.next_wakeup() == math.inf
    plan.record_running(a, 7.5)  # its answer: still running, past its deadline
    assert plan.next_wakeup() <= 7.5
    assert [e.payload for e in plan.expire(7.5)] == ["a"]


def test_stale_rows_are_cleared_a_share_per_call_never_past_a_due_check() -> None:
    """Thousands of ended tasks leave their rows in the plan; each wake-up asked for clears at
    most a share of them, and never answers later than the next live check."""
    plan: Planner[str] = Planner()
    ended = [_add(plan, f"e{i}", 0.0) for i in range(1000)]
    live = _add(plan, "live", 5.0)
    for entry in ended:
        plan.finish(entry)  # type: ignore[arg-type]
    answers = []
    while not answers or answers[-1] != live.due:  # type: ignore[attr-defined]
        answers.append(plan.next_wakeup())
        assert answers[-1] <= live.due  # type: ignore[attr-defined]
    assert len(answers) >= 1000 // 256
