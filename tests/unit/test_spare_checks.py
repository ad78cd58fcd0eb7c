"""Idle request budget goes to earlier checks (issue 13, item 5): the planner's pure choice,
and what it buys on a fake clock."""

from __future__ import annotations

import asyncio
import random
import statistics

import pytest

import nanobanana_async as nb
from nanobanana_async._scheduler import _plan
from nanobanana_async._scheduler._account import Account
from nanobanana_async._scheduler._plan import Planner
from nanobanana_async.testing import FakeClock, ScriptedTransport
from tests.fakeapi import FakeApixo


def learned_planner() -> Planner[str]:
    plan: Planner[str] = Planner()
    model = plan.model("g", 1.0, 1.0)
    for _ in range(5):
        model.observe(9.0, 11.0)  # median 10 s
    return plan


def test_spare_picks_the_likeliest_finished_after_a_gap() -> None:
    """Of the tasks planned for later, the ones likeliest to have finished since their last
    check (by the learned model), at least a quarter of the median apart; never a task that
    expects a callback, one checking now, or one inside its provider's floor."""
    plan = learned_planner()  # durations about 10 s
    add = {"deadline": 1000.0, "first_poll": 1.0, "poll_interval": 1.0}
    a = plan.add("a", group="g", now=0.0, **add)
    b = plan.add("b", group="g", now=0.5, **add)
    plan.add("late", group="g", now=0.0, late=True, **add)
    floored = plan.add("floored", group="g", now=0.0, min_gap=9.8, **add)
    busy = plan.add("busy", group="g", now=0.0, **add)
    plan.sent(busy, 0.0)
    # At 2.4 s nothing is a quarter of the median (2.5 s) past its last check.
    chosen, retry_at = plan.spare(2.4, 10)
    assert chosen == []
    assert retry_at == pytest.approx(2.5)
    # At 7.6 s: a (age 7.6) has a ~22% chance of having finished, b (age 7.1) ~17%: only a;
    # the floored one becomes eligible at 9.8 s.
    chosen, retry_at = plan.spare(7.6, 10)
    assert chosen == [a]
    assert retry_at == pytest.approx(9.8)
    # At 8.5 s a is due (the plan checks it), the floored one waits for its floor; b is
    # pulled forward.
    assert a.due <= 8.5 < floored.due
    assert plan.spare(8.5, 10)[0] == [b]
    assert plan.spare(8.5, 0)[0] == []


def test_a_task_in_the_tail_is_looked_at_again_a_quarter_median_after_a_spare_check() -> None:
    """A task among the slowest tenth that is checked early is due a look again as soon as
    it may go (a quarter of the median later): the last task of a run is then checked that
    often while the budget is idle, not only at its plan's checks a median apart. A task not
    in the tail waits for the runner's next turn."""
    plan = learned_planner()  # median ~10 s: the slowest 10% take over ~17.7 s
    add = {"deadline": 1000.0, "first_poll": 1.0, "poll_interval": 1.0}
    slow = plan.add("slow", group="g", now=0.0, **add)
    plan.sent(slow, 30.0)
    plan.record_running(slow, 30.0)
    assert slow.due > 36.0  # the plan: its steps grow in the tail
    chosen, retry_at = plan.spare(32.6, 10)
    assert chosen == [slow]
    assert retry_at == pytest.approx(32.6 + 2.5)
    # Not in the tail: picked, and no look asked for on its account.
    plan2 = learned_planner()
    mid = plan2.add("mid", group="g", now=0.0, **add)
    plan2.sent(mid, 12.0)
    plan2.record_running(mid, 12.0)
    assert mid.due > 14.6
    chosen, retry_at = plan2.spare(14.6, 10)
    assert chosen == [mid]
    assert retry_at == float("inf")


def test_a_task_planned_twice_for_one_time_is_pulled_forward_once() -> None:
    """Two plans of one task that land on the same time (a replan after a callback, say) give
    one early check, never two at once for one task."""
    plan = learned_planner()
    add = {"deadline": 1000.0, "first_poll": 20.0, "poll_interval": 1.0}
    a = plan.add("a", group="g", now=0.0, **add)
    plan.schedule(a, a.due)
    chosen, _ = plan.spare(7.6, 10)
    assert chosen == [a]
    plan.sent(a, 7.6)  # a second pick would raise: a check of it is already out


def test_each_task_is_scored_by_its_own_groups_model() -> None:
    """Tasks of a fast and a slow model, planned in turns for the same times: only the fast
    ones are likely finished, and the slow ones wait for their own gap (a quarter of their
    median), whatever order their rows come in."""
    plan = learned_planner()  # "g": durations about 10 s
    slow = plan.model(("slow", "m"), 1.0, 1.0)
    for _ in range(5):
        slow.observe(90.0, 110.0)  # median 100 s
    add = {"deadline": 1000.0, "first_poll": 50.0, "poll_interval": 1.0}
    fast, slow_ones = [], []
    model = "m"
    for i in range(6):
        fast.append(plan.add(f"f{i}", group="g", now=0.0, **add))
        # An equal key, not the same object: each client's task builds its own.
        slow_ones.append(plan.add(f"s{i}", group=("slow", model), now=0.0, **add))
    for entry in [*fast, *slow_ones]:
        plan.schedule(entry, 50.0)  # every row at one time: groups alternate by age
    chosen, retry_at = plan.spare(12.0, 10)
    assert chosen == fast  # likeliest first, ties to the older task
    assert retry_at == pytest.approx(25.0)  # a quarter of the slow median after the submit


def test_a_probe_keeps_its_own_schedule_while_the_model_is_learned() -> None:
    """A probe's planned checks already come at doubling ages: idle budget pulls none of them
    forward (a task waiting on the advice is the spare probes' case, below)."""
    plan: Planner[str] = Planner()
    x = plan.add("x", group="g", now=0.0, deadline=100.0, first_poll=32.0, poll_interval=5.0)
    assert x.probe
    assert x.due == pytest.approx(2.0)  # 1/16 of the advice
    assert plan.spare(1.0, 10) == ([], pytest.approx(2.0))


def test_spare_probes_learn_a_model_from_more_tasks_than_the_three_probes() -> None:
    """While a model is being learned, idle budget makes at most 16 more of its tasks probes:
    each waiting on the advice (10 s) is checked from 1/16 of it, oldest first, then at
    doubling ages up to the advice, never once the model is learned (the advice was 10 s;
    the tasks take ~1.5 s, and three probes alone wait for the slowest of three)."""
    plan: Planner[str] = Planner()
    add = {"group": "g", "deadline": 100.0, "first_poll": 10.0, "poll_interval": 5.0}
    tasks = [plan.add(f"t{i}", now=i * 0.01, **add) for i in range(30)]
    assert [t.probe for t in tasks[:4]] == [True, True, True, False]
    waiting = tasks[3:]
    assert all(t.due == pytest.approx(t.submitted + 10.0) for t in waiting)
    # Before 1/16 of the advice nothing is worth a check.
    assert plan.spare(0.6, 32) == ([], pytest.approx(0.625))  # the first probe's own check
    chosen, _ = plan.spare(0.9, 32)
    assert chosen == waiting[:16]  # oldest first, and no more than 16 made probes
    assert all(t.probe for t in chosen)
    assert not waiting[16].probe
    for t in chosen:
        plan.sent(t, 0.9)
        plan.record_running(t, 0.95)
        assert t.due == pytest.approx(t.submitted + 2 * (0.95 - t.submitted))
    # The rest keep to the advice: the room for probes is taken. The probes may go again at
    # twice their age at their last check.
    again = min(2 * 0.9 - t.submitted for t in chosen)
    assert plan.spare(1.0, 32) == ([], pytest.approx(again))
    # Once learned, they are scored by the model instead (a quarter of its median apart).
    for t in tasks[:3]:
        plan.sent(t, 1.5)
        plan.record_done(t, 1.6)
    assert plan.learned_model("g") is not None
    chosen, _ = plan.spare(1.7, 32)
    assert chosen
    assert all(t.checks <= 1 for t in chosen)


def test_nothing_is_probed_past_the_advice_or_for_a_callback() -> None:
    """A task expecting a callback or resumed (its age is a record's) is never probed, and no
    probe is pulled forward at or past the advice's first check: from there the advice's own
    cadence applies."""
    plan: Planner[str] = Planner()
    add = {"group": "g", "deadline": 100.0, "first_poll": 8.0, "poll_interval": 5.0}
    for i in range(3):
        plan.add(f"p{i}", now=0.0, **add)
    late = plan.add("late", now=0.0, late=True, **add)
    resumed = plan.add("resumed", now=0.0, resumed=True, **add)
    old = plan.add("old", now=0.0, **add)
    plan.sent(old, 4.5)
    plan.record_running(old, 4.5)  # seen running at 4.5 s: doubling would be 9 s, past 8 s
    chosen, _ = plan.spare(7.0, 10)
    assert late not in chosen
    assert resumed not in chosen
    assert old not in chosen


async def run(limits: nb.Limits | None, tasks: int = 40) -> tuple[float, float]:
    """Tasks of lognormal latency (median 4.5 s) at once on a roomy account: (median lag,
    checks/task)."""
    clock = FakeClock(0.0)
    rng = random.Random(3)
    durations = [rng.lognormvariate(1.5, 0.4) for _ in range(tasks)]
    server = FakeApixo(clock, latency=lambda i: durations[i])
    client = nb.Client(
        "apixo", api_key="k", transport=ScriptedTransport(server), clock=clock, limits=limits
    )
    async with client:
        jobs = [asyncio.ensure_future(client.generate(f"cat {i}")) for i in range(tasks)]
        await clock.run_until(lambda: all(j.done() for j in jobs), step=0.05)
    lags = [t.seen_done_at - t.finish for t in server.tasks.values() if t.seen_done_at]
    return statistics.median(lags), server.count("status") / tasks


async def test_idle_budget_sees_finished_tasks_sooner_when_the_limits_are_known() -> None:
    """Told the account's limits, a client with nothing left to submit spends its idle
    requests on earlier checks: finished tasks are seen far sooner. With assumed defaults it
    keeps to its plan (the account may be smaller than they say)."""
    roomy = nb.Limits(requests=10_000, per=60, concurrent_tasks=1_000)
    known_lag, known_checks = await run(roomy)
    assumed_lag, assumed_checks = await run(None)
    assert known_lag < 0.7 * assumed_lag
    assert known_checks > assumed_checks  # the price: more checks, all within the limits


async def test_a_large_budget_does_not_double_the_checks_per_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Idle budget is not free (issue 22, item 5): with a budget far larger than it needs, a
    flow of tasks gets at most a third more checks per task than its plan alone, each spare
    one at least a quarter of the learned median after the task's last check, and they buy a
    shorter lag. (Pulled forward at a tenth of the median, on a plan made denser by the idle
    budget, the checks per task doubled.)"""
    roomy = nb.Limits(requests=10_000, per=60, concurrent_tasks=40)
    spare_lag, spare_checks = await run(roomy, tasks=200)
    # The plan alone: no check pulled forward, and no pressure below the plan's.
    monkeypatch.setattr(Account, "spends_spare", False)
    monkeypatch.setattr(Account, "update_pressure", lambda *args, **kwargs: None)
    plan_lag, plan_checks = await run(roomy, tasks=200)
    assert spare_checks <= 1.35 * plan_checks, (spare_checks, plan_checks)
    assert spare_lag < 0.8 * plan_lag, (spare_lag, plan_lag)


async def first_wave(tasks: int = 40) -> tuple[float, int]:
    """40 tasks at once (median 1.5 s against apixo's 10 s advice) on a roomy account told
    its limits: (worst lag, checks sent before the check that saw the third task finished,
    which teaches the model)."""
    clock = FakeClock(0.0)
    rng = random.Random(5)
    durations = [rng.lognormvariate(0.4, 0.5) for _ in range(tasks)]
    server = FakeApixo(clock, latency=lambda i: durations[i])
    roomy = nb.Limits(requests=10_000, per=60, concurrent_tasks=1_000)
    client = nb.Client(
        "apixo", api_key="k", transport=ScriptedTransport(server), clock=clock, limits=roomy
    )
    async with client:
        jobs = [asyncio.ensure_future(client.generate(f"cat {i}")) for i in range(tasks)]
        await clock.run_until(lambda: all(j.done() for j in jobs), step=0.05)
    seen = sorted(t.seen_done_at for t in server.tasks.values() if t.seen_done_at is not None)
    learning = sum(1 for at, kind in server.log if kind == "status" and at < seen[2])
    lags = [t.seen_done_at - t.finish for t in server.tasks.values() if t.seen_done_at]
    return max(lags), learning


async def test_spare_probes_see_the_first_wave_finish_sooner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before the model is learned, idle budget probes up to 16 more tasks than the three
    probes, so the model is learned from the first completions, not from the slowest probe:
    the worst lag of a first wave falls by more than half, for at most four checks per probe
    while the model is learned (the advice's first check comes later)."""
    probed_worst, probed_learning = await first_wave()
    monkeypatch.setattr(_plan, "_SPARE_PROBES", 0)
    three_worst, three_learning = await first_wave()
    assert probed_worst < 0.5 * three_worst, (probed_worst, three_worst)
    assert three_learning <= 3 * 4
    assert probed_learning <= (3 + 16) * 4, probed_learning
