"""The per-account create dispenser (issue 22, item 2): creates whose paced turn has not come
wait in their account's queue, first in first out, and the runner's one timer hands the turns
out; status checks wait behind them; no create is sent before its turn."""

from __future__ import annotations

import asyncio
import bisect
import json
import math
from collections.abc import AsyncIterator

import pytest

import nanobanana_async as nb
from nanobanana_async._limits import Gcra, on_grid, pacing
from nanobanana_async._scheduler._account import Account
from nanobanana_async._scheduler._ledger import Ledger
from nanobanana_async._scheduler._runner import Scheduler
from nanobanana_async.testing import FakeClock, HttpRequest, HttpResponse, ScriptedTransport
from nanobanana_async.testing import json_response as answer

# Fewer than 200 requests in the window: a burst of one, so turns are exactly one interval apart.
STEADY = nb.Limits(requests=50, per=5.0, concurrent_tasks=1_000)
INTERVAL = pacing(STEADY)[0]


class Recorder:
    """A provider that accepts every create (the prompt is its id) and answers every check
    done, noting when each request was sent."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.creates: list[tuple[float, str]] = []
        self.checks: list[float] = []
        self.checked: dict[str, float] = {}  # task id: when its last check was sent
        self.transport = ScriptedTransport(self.answer)

    def answer(self, request: HttpRequest) -> HttpResponse:
        now = self.clock.now()
        if request.kind == "submit":
            assert isinstance(request.json, dict)
            task_id = request.json["input"]["prompt"]
            self.creates.append((now, task_id))
            return answer({"code": 200, "message": "success", "data": {"taskId": task_id}})
        self.checks.append(now)
        self.checked[str(request.params["taskId"])] = now
        data = {
            "taskId": request.params["taskId"],
            "state": "success",
            "resultJson": json.dumps({"resultUrls": ["https://i/x.png"]}),
        }
        return answer({"code": 200, "message": "success", "data": data})


@pytest.fixture
async def account_ledger(clock: FakeClock) -> AsyncIterator[Ledger]:
    """The in-memory ledger of an account on the fake clock's runner (as a Client sets up)."""
    scheduler = Scheduler.for_clock(clock)
    scheduler.attach()
    account = scheduler.account("dispenser-test", STEADY, nb.RetryPolicy())
    try:
        yield account.ledger
    finally:
        await scheduler.detach()


def _takers(ledger: Ledger, clock: FakeClock, n: int) -> tuple[list[asyncio.Task[None]], dict]:
    got: dict[int, float] = {}

    async def take(i: int) -> None:
        await ledger.acquire_request()
        got[i] = clock.now()

    return [asyncio.ensure_future(take(i)) for i in range(n)], got


async def test_queued_creates_go_at_their_turns_in_order_and_none_early(clock: FakeClock) -> None:
    """30 creates asked at once go one pace interval apart in the order they were asked, each
    at or after its turn and within one wake-grid step of it; all but the first waited in the
    account's queue (no sleep of their own), and the runner turned about once per create."""
    provider = Recorder(clock)
    async with nb.Client(
        "apixo", api_key="k", transport=provider.transport, clock=clock, limits=STEADY
    ) as client:
        scheduler = Scheduler.for_clock(clock)
        ledger = next(iter(scheduler._accounts.values())).ledger
        before, t0 = scheduler.turns, clock.now()
        jobs = [
            asyncio.ensure_future(client.submit(nb.ImageRequest(prompt=f"p{i:02d}")))
            for i in range(30)
        ]
        await clock.run_until(lambda: all(job.done() for job in jobs), step=0.01)
        turns = scheduler.turns - before
        assert ledger.dispensed == 29
        made = [job.result() for job in jobs]
        await clock.run_until(lambda: all(task.done() for task in made), step=0.5)
    assert [task_id for _, task_id in provider.creates] == [f"p{i:02d}" for i in range(30)]
    for i, (sent, _) in enumerate(provider.creates):
        turn = t0 + i * INTERVAL
        assert turn - 1e-9 <= sent <= on_grid(turn) + 1e-9, (i, sent, turn)
    assert turns <= 31, turns


async def test_due_checks_wait_behind_queued_creates(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checks that come due while creates wait for their turns are sent once the queue is
    empty, never between two queued creates: creates book before checks."""
    monkeypatch.setattr(Account, "spends_spare", property(lambda self: False))
    provider = Recorder(clock)
    async with nb.Client(
        "apixo", api_key="k", transport=provider.transport, clock=clock, limits=STEADY
    ) as client:
        # apixo's first check is 10 s after the submit (a resume counts as one).
        resumed = [client.resume(f"r{i}", model="nano-banana-2") for i in range(10)]
        await clock.advance(9.9)
        start = clock.now()
        jobs = [
            asyncio.ensure_future(client.submit(nb.ImageRequest(prompt=f"p{i:02d}")))
            for i in range(30)
        ]
        await clock.run_until(lambda: all(task.done() for task in resumed), step=0.01)
        await clock.run_until(lambda: all(job.done() for job in jobs), step=0.01)
        made = [job.result() for job in jobs]
        await clock.run_until(lambda: all(task.done() for task in made), step=0.5)
    last_create = provider.creates[-1][0]
    assert last_create > start + 0.1 + 0.5  # the queue ran well past the checks' due time
    assert len(provider.checks) == 40  # the resumed tasks' and the created ones'
    # The resumed tasks not probed early (and not moved before the creates by what the probes
    # taught) came due at start + 0.1 and went right after the queue.
    late = [provider.checked[f"r{i}"] for i in range(10) if provider.checked[f"r{i}"] > start]
    assert late
    assert min(late) >= last_create
    assert all(at < start or at >= last_create for at in provider.checks), provider.checks


async def test_a_cancelled_queued_create_frees_its_place(
    clock: FakeClock, account_ledger: Ledger
) -> None:
    """A create cancelled while it waits in the queue books nothing: the one behind it goes
    at the turn it would have had, and the pace after the rest is as if it never asked."""
    ledger, t0 = account_ledger, clock.now()
    tasks, got = _takers(ledger, clock, 5)
    await clock.advance(0.0)
    assert ledger.creates_waiting
    tasks[2].cancel()
    await clock.advance(1.0)
    assert sorted(got) == [0, 1, 3, 4]
    for i, turn in zip([0, 1, 3, 4], [0, 1, 2, 3], strict=True):
        at = t0 + turn * INTERVAL
        assert at - 1e-9 <= got[i] <= on_grid(at) + 1e-9
    assert not ledger.creates_waiting
    assert ledger.gcra.next_free() == pytest.approx(t0 + 4 * INTERVAL)  # four turns booked, no more
    assert tasks[2].cancelled()


async def test_a_429_pause_moves_the_queued_turns(clock: FakeClock, account_ledger: Ledger) -> None:
    """A 429's pause noted while creates wait moves their turns after it, still one interval
    apart; none goes during the pause."""
    ledger, t0 = account_ledger, clock.now()
    _, got = _takers(ledger, clock, 4)
    await clock.advance(0.0)
    ledger.pause(2.0)
    await clock.advance(3.0)
    assert got[0] == t0
    for i in (1, 2, 3):
        turn = t0 + 2.0 + (i - 1) * INTERVAL
        assert turn - 1e-9 <= got[i] <= on_grid(turn) + 1e-9, (i, got[i])


async def test_closing_the_last_client_fails_queued_creates(
    clock: FakeClock, account_ledger: Ledger
) -> None:
    """A create still waiting for its turn when the scheduler stops (its last client closed)
    fails with ClientClosedError, not left waiting for ever."""
    ledger = account_ledger
    tasks, got = _takers(ledger, clock, 3)
    await clock.advance(0.0)
    await ledger.aclose()
    await asyncio.wait(tasks)
    assert list(got) == [0]  # the one free at once
    for task in tasks[1:]:
        assert isinstance(task.exception(), nb.ClientClosedError)


async def test_a_ledger_without_a_runner_hands_turns_out_on_its_own_timer(
    clock: FakeClock,
) -> None:
    """A ledger used without a scheduler (no runner to wake it) still paces its queue."""
    ledger, t0 = Ledger(STEADY, clock), clock.now()
    _, got = _takers(ledger, clock, 3)
    await clock.advance(1.0)
    assert [got[i] for i in range(3)] == [t0, on_grid(t0 + INTERVAL), on_grid(t0 + 2 * INTERVAL)]
    await ledger.aclose()


def _most_in_window(times: list[float], per: float) -> int:
    times = sorted(times)
    return max(bisect.bisect_left(times, t + per - 1e-9) - i for i, t in enumerate(times))


async def test_a_burst_of_500_creates_keeps_the_window_bound(clock: FakeClock) -> None:
    """500 creates asked at once, and the checks of their tasks, never put more requests in
    any window than the even pace allows (per / interval + burst, within the limit less its
    margin); the creates go in order, and the last at its pace, not later."""
    limits = nb.Limits(requests=400, per=2.0, concurrent_tasks=1_000)
    interval, burst = pacing(limits)
    assert burst > 1
    provider, t0 = Recorder(clock), clock.now()
    async with nb.Client(
        "apixo", api_key="k", transport=provider.transport, clock=clock, limits=limits
    ) as client:
        jobs = asyncio.gather(*(client.generate(f"p{i:03d}") for i in range(500)))
        await clock.run_until(jobs.done, step=0.05)
        assert len(jobs.result()) == 500
    sends = [at for at, _ in provider.creates] + provider.checks
    assert len(sends) == 1000
    allowed = math.floor(limits.per / interval) + burst
    assert allowed <= math.floor(limits.requests * (1 - limits.safety_margin))
    assert _most_in_window(sends, limits.per) <= allowed
    assert [task_id for _, task_id in provider.creates] == [f"p{i:03d}" for i in range(500)]
    # Conforming: never earlier than the GCRA of the even pace allows.
    gcra = Gcra(interval, burst)
    for at, _ in provider.creates:
        assert gcra.turn(at) <= at + 1e-9
        gcra.reserve(at)
    assert provider.creates[-1][0] <= on_grid(t0 + 499 * interval) + 1e-9


async def test_a_check_takes_no_request_while_a_create_waits(clock: FakeClock) -> None:
    """A create held to the steady pace (one create is still unanswered) waits for its turn;
    meanwhile the burst tolerance would let a status check through, but a check takes no
    request while a create waits: the create goes first, at its turn."""
    limits = nb.Limits(requests=400, per=2.0, concurrent_tasks=10)
    interval, burst = pacing(limits)
    assert burst == 3
    scheduler = Scheduler.for_clock(clock)
    scheduler.attach()
    try:
        ledger = scheduler.account("steady-create", limits, nb.RetryPolicy()).ledger
        t0 = clock.now()
        for _ in range(burst):
            await ledger.acquire_request()  # the burst, at once
        unanswered = ledger.slots.try_acquire("client")
        assert unanswered is not None
        assert ledger.slots.try_admit(unanswered)  # sent, not answered yet
        lease = ledger.slots.try_acquire("client")
        assert lease is not None
        create = asyncio.ensure_future(ledger.acquire_request(lease))
        await clock.advance(1.5 * interval)
        assert not create.done()
        assert not ledger.try_take_request(clock.now())
        await clock.advance(2 * interval)
        assert create.done()
        assert ledger.dispensed == 1
        assert clock.now() >= t0 + burst * interval
    finally:
        await scheduler.detach()


async def test_a_cap_cut_sends_queued_creates_back_to_wait_for_a_slot(
    clock: FakeClock, account_ledger: Ledger
) -> None:
    """When a create's 429 cuts the task cap, the creates waiting in the queue leave it and
    wait for a slot first (a turn they could not use would be lost): status checks, which
    end tasks and free slots, may take requests at once. Once a task ends, the next create
    is admitted and goes at its turn."""
    ledger = account_ledger
    slots = ledger.slots
    running = [slots.try_acquire("client") for _ in range(4)]
    for lease in running:
        assert lease is not None
        assert slots.try_admit(lease)
    for lease in running[:3]:
        assert lease is not None
        ledger.note_accepted(lease)
    await ledger.acquire_request()  # the turn free now: the queue starts behind it
    waiting = [slots.try_acquire("client") for _ in range(2)]
    creates = [asyncio.ensure_future(ledger.acquire_request(lease)) for lease in waiting]
    await clock.advance(0.0)
    assert ledger.creates_waiting
    refused = running[3]
    assert refused is not None
    assert ledger.rate_limited(retry_after=None, creating=True, lease=refused)  # the cap: 3
    slots.refused(refused)
    assert slots.cap == 3
    await clock.advance(0.0)
    assert not ledger.creates_waiting
    assert ledger.try_take_request(clock.now())  # a check goes now
    await clock.advance(1.0)
    assert not any(create.done() for create in creates)  # no slot yet: no turn taken
    assert ledger.dispensed == 0
    ended = running[0]
    assert ended is not None
    slots.release(ended)  # a task ended: one create is admitted, and goes at its turn
    await clock.advance(1.0)
    assert creates[0].done()
    assert not creates[1].done()
    for create in creates[1:]:
        create.cancel()


async def test_creates_held_by_a_full_window_go_at_the_pace_once_it_frees(
    clock: FakeClock, account_ledger: Ledger
) -> None:
    """Creates that waited for a full window (sends of an earlier run still in it) go one
    pace interval apart once it frees, not all at once: their pace turns passed meanwhile,
    but the pace counts from when the window frees."""
    ledger, t0 = account_ledger, clock.now()
    ledger.seed_sends([t0 - 4.0] * 60)  # the window (49 of 50 in 5 s) is full until t0 + 1
    _, got = _takers(ledger, clock, 10)
    await clock.advance(0.5)
    assert got == {}
    await clock.advance(2.0)
    assert sorted(got) == list(range(10))
    for i in range(10):
        turn = t0 + 1.0 + i * INTERVAL
        assert turn - 1e-9 <= got[i] <= on_grid(turn) + 1e-9, (i, got[i] - t0)


async def test_closing_a_client_fails_its_queued_creates_and_sends_none(clock: FakeClock) -> None:
    """Submits still waiting in the queue for their turn when their client closes fail with
    ClientClosedError; none of them is sent, and the queue is left empty."""
    provider = Recorder(clock)
    client = nb.Client(
        "apixo", api_key="k", transport=provider.transport, clock=clock, limits=STEADY
    )
    ledger = None
    async with client:
        jobs = [
            asyncio.ensure_future(client.submit(nb.ImageRequest(prompt=f"p{i}"))) for i in range(5)
        ]
        await clock.advance(0.0)
        ledger = next(iter(Scheduler.for_clock(clock)._accounts.values())).ledger
        assert ledger.creates_waiting
        first = await jobs[0]
    await asyncio.wait(jobs)
    assert ledger is not None
    assert not ledger.creates_waiting
    assert [task_id for _, task_id in provider.creates] == ["p0"]
    for job in jobs[1:]:
        assert isinstance(job.exception(), nb.ClientClosedError)
    assert first.done()  # failed by the close, its id kept


async def test_f30_closing_a_client_frees_the_slots_of_its_queued_creates(clock: FakeClock) -> None:
    """Creates stopped by their client's close before they were sent give their slots back at
    once: held to a task's horizon, they kept the account's other client from creating."""
    provider = Recorder(clock)
    limits = nb.Limits(requests=STEADY.requests, per=STEADY.per, concurrent_tasks=6)
    other = nb.Client(
        "apixo", api_key="k", transport=provider.transport, clock=clock, limits=limits
    )
    closing = nb.Client(
        "apixo", api_key="k", transport=provider.transport, clock=clock, limits=limits
    )
    async with other:
        first = await other.submit(nb.ImageRequest(prompt="first"))
        ledger = next(iter(Scheduler.for_clock(clock)._accounts.values())).ledger
        async with closing:
            jobs = [
                asyncio.ensure_future(closing.submit(nb.ImageRequest(prompt=f"p{i}")))
                for i in range(5)
            ]
            await clock.advance(0.0)
            assert ledger.creates_waiting
            assert ledger.slots.held == 6  # the cap: every slot taken
        await asyncio.wait(jobs)
        for job in jobs:
            assert isinstance(job.exception(), nb.ClientClosedError)
        assert [task_id for _, task_id in provider.creates] == ["first"]
        # Only the open client's task holds a slot: its next create goes without waiting.
        assert ledger.slots.held == 1
        second = asyncio.ensure_future(other.submit(nb.ImageRequest(prompt="second")))
        await clock.advance(1.0)  # ten pace intervals: its turn, not a task's horizon
        assert second.done()
        assert second.result().id == "second"
        await first


async def test_f18_a_turn_handed_to_a_create_cancelled_in_that_tick_goes_to_the_next(
    clock: FakeClock,
) -> None:
    """A create cancelled in the same loop tick as the dispenser hands it its turn (its client
    closing while another client of the account queues creates) sends nothing: F18, only that
    waiter detaches. The turn booked for it goes to the next create waiting, at once, and
    the one after that keeps its own turn (the pace lost none); with no create waiting, the
    booking is undone and a status check may take the turn."""
    ledger = Ledger(STEADY, clock)
    handed: list[float] = []
    ledger.dispense_through(handed.append)  # this test plays the runner
    await ledger.acquire_request()  # the turn free now: the queue starts behind it
    t0 = clock.now()
    first, second, third = _takers(ledger, clock, 3)[0]
    await clock.advance(0.0)
    assert ledger.creates_waiting
    await clock.advance(INTERVAL)
    assert ledger.dispense(clock.now()) > clock.now()  # the first create's turn only
    first.cancel()  # in the same tick: its caller left before it could send
    await clock.advance(0.0)
    assert first.cancelled()
    assert second.done()  # the first one's turn, not one interval later
    assert ledger.dispensed == 1  # one turn handed out and taken
    await clock.advance(INTERVAL)
    ledger.dispense(clock.now())
    third.cancel()
    await clock.advance(0.0)
    assert third.cancelled()
    assert clock.now() == pytest.approx(t0 + 2 * INTERVAL)
    assert ledger.try_take_request(clock.now())  # the third's booking was undone


async def test_f18_a_turn_passed_on_to_a_create_cancelled_in_that_tick_too_is_undone(
    clock: FakeClock,
) -> None:
    """A turn passed on from a create cancelled in the tick it was booked, to the next create,
    whose caller is cancelled in that tick as well: neither sends, and the booking is undone
    (a status check may take the turn), not left spent for a request never sent."""
    ledger = Ledger(STEADY, clock)
    ledger.dispense_through(lambda at: None)  # this test plays the runner
    await ledger.acquire_request()  # the turn free now: the queue starts behind it
    first, second = _takers(ledger, clock, 2)[0]
    await clock.advance(0.0)
    await clock.advance(INTERVAL)
    ledger.dispense(clock.now())  # the first create's turn
    first.cancel()
    await asyncio.sleep(0)  # the first leaves and passes its turn on to the second ...
    second.cancel()  # ... whose caller leaves before it could send
    await clock.advance(0.0)
    assert first.cancelled()
    assert second.cancelled()
    assert ledger.dispensed == 0
    assert ledger.try_take_request(clock.now())  # the booking was undone
