"""The poll planner: ordering, deadlines, probing and learning, with bare floats."""

from __future__ import annotations

import math
import random

from nanobanana_async._scheduler._plan import PROBES, LatencyModel, Planner


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


def test_due_orders_by_time_then_age_and_skips_finished() -> None:
    """Due entries come earliest first, older first on ties; finished ones never come back."""
    plan: Planner[str] = Planner()
    _a, b, _c = (_add(plan, n, 0.0) for n in "abc")
    plan.finish(b)  # type: ignore[arg-type]
    assert [e.payload for e in plan.due(1.0)] == ["a", "c"]
    assert plan.due(100.0) == []
    assert plan.pending == 2


def test_expire_and_next_wakeup() -> None:
    """An entry past its deadline is expired once; the wakeup is the earliest due or deadline."""
    plan: Planner[str] = Planner()
    entry = _add(plan, "a", 0.0, deadline=5.0)
    assert plan.next_wakeup() == 10.0 / 16
    assert plan.expire(4.9) == []
    assert [e.payload for e in plan.expire(5.0)] == ["a"]
    plan.finish(entry)  # type: ignore[arg-type]
    assert plan.expire(6.0) == []
    assert math.isinf(plan.next_wakeup())


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
    assert model.median == __import__("pytest").approx(2.0, rel=0.15)
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
