"""Idle request budget goes to earlier checks (issue 13, item 5): the planner's pure choice,
and what it buys on a fake clock."""

from __future__ import annotations

import asyncio
import random
import statistics

import pytest

import nanobanana_async as nb
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


def test_nothing_is_pulled_forward_before_the_model_is_learned() -> None:
    plan: Planner[str] = Planner()
    plan.add("x", group="g", now=0.0, deadline=100.0, first_poll=30.0, poll_interval=5.0)
    assert plan.spare(20.0, 10) == ([], float("inf"))


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
