"""A task's status checks are sent from the task of the caller awaiting it (issue 22, loop
turns per request): no check task, no hand-over from one to the caller. Whoever does not
await (a submit() left alone, a resumed task, a caller cancelled as its check comes due or
while it is in flight) still has every check sent, from a check task of the runner's."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

import pytest

import nanobanana_async as nb
from nanobanana_async._scheduler._account import Tracked
from nanobanana_async._scheduler._ledger import Ledger
from nanobanana_async._scheduler._runner import Scheduler
from nanobanana_async._task import Task
from nanobanana_async.events import Event
from nanobanana_async.testing import (
    FakeClock,
    HttpRequest,
    HttpResponse,
    ScriptedTransport,
    json_response,
)

LIMITS = nb.Limits(requests=10**9, per=1.0, concurrent_tasks=100)

from nanobanana_async._scheduler._runner import CHECKS_IN_CALLER  # noqa: E402

handover = pytest.mark.skipif(
    not CHECKS_IN_CALLER,
    reason="checks in the caller's task are off (see _runner.CHECKS_IN_CALLER)",
)


def status(task_id: str, state: str) -> HttpResponse:
    data: dict[str, object] = {"taskId": task_id, "state": state}
    if state == "success":
        data["resultJson"] = json.dumps({"resultUrls": ["https://i/x.png"]})
    return json_response({"code": 200, "message": "success", "data": data})


def created(request: HttpRequest) -> HttpResponse:
    assert isinstance(request.json, dict)
    task_id = request.json["input"]["prompt"].replace(" ", "-")
    return json_response({"code": 200, "message": "success", "data": {"taskId": task_id}})


class Server:
    """Accepts creates; a task answers 'processing' to its first ``running`` checks, then
    'success'. Records the asyncio task each check was sent from."""

    def __init__(self, running: int = 2) -> None:
        self.running = running
        self.checks: dict[str, int] = {}
        self.senders: list[asyncio.Task[object] | None] = []
        self.hold: Callable[[], Awaitable[None]] | None = None  # blocks the next check

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if request.kind == "submit":
            return created(request)
        self.senders.append(asyncio.current_task())
        task_id = str(request.params["taskId"])
        seen = self.checks[task_id] = self.checks.get(task_id, 0) + 1
        answer = status(task_id, "processing" if seen <= self.running else "success")
        hold, self.hold = self.hold, None
        if hold is None:
            return answer

        async def later() -> HttpResponse:
            await hold()
            return answer

        return later()


@handover
async def test_a_generate_sends_its_checks_from_its_own_task(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every status check of a generate() call is sent from that call's own asyncio task, and
    the runner starts no check task for it."""
    server = Server(running=2)
    spawned: list[object] = []
    spawn = Scheduler._spawn_check

    def recording(self: Scheduler, entry: Tracked) -> None:
        spawned.append(entry)
        spawn(self, entry)

    monkeypatch.setattr(Scheduler, "_spawn_check", recording)
    async with nb.Client(
        "apixo", api_key="k", transport=ScriptedTransport(server), clock=clock, limits=LIMITS
    ) as client:
        caller = asyncio.ensure_future(client.generate("a cat"))
        await clock.run_until(caller.done, step=1.0, limit=300.0)
        result = caller.result()
    assert result.task_id == "a-cat"
    assert len(server.senders) == 3  # two 'processing', then the end
    assert all(sender is caller for sender in server.senders)
    assert spawned == []


@handover
async def test_an_awaited_submitted_task_is_checked_from_its_awaiter(clock: FakeClock) -> None:
    """``await task`` on a submitted task sends its checks from the awaiting task."""
    server = Server(running=1)
    async with nb.Client(
        "apixo", api_key="k", transport=ScriptedTransport(server), clock=clock, limits=LIMITS
    ) as client:
        task = await client.submit(nb.ImageRequest(prompt="a dog"))

        async def wait() -> nb.ImageResult:
            return await task

        caller = asyncio.ensure_future(wait())
        await clock.run_until(caller.done, step=1.0, limit=300.0)
    assert caller.result().task_id == "a-dog"
    assert server.senders == [caller, caller]


async def test_a_submit_nobody_awaits_is_checked_by_the_runner_and_resolves(
    clock: FakeClock,
) -> None:
    """A submitted task nobody awaits (and a resumed one) is checked from a check task of
    the runner's and resolves all the same."""
    server = Server(running=1)
    async with nb.Client(
        "apixo", api_key="k", transport=ScriptedTransport(server), clock=clock, limits=LIMITS
    ) as client:
        task = await client.submit(nb.ImageRequest(prompt="a fox"))
        resumed = client.resume("an-owl", model="nano-banana-2")
        await clock.run_until(lambda: task.done() and resumed.done(), step=1.0, limit=300.0)
        me = asyncio.current_task()
        assert len(server.senders) == 4
        assert all(sender is not None and sender is not me for sender in server.senders)
        assert (await task).task_id == "a-fox"
        assert (await resumed).task_id == "an-owl"


@handover
async def test_a_caller_cancelled_mid_check_leaves_the_task_tracked_and_checked(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A generate() cancelled while the check it sends is on the wire: the cancel reaches the
    caller at once, its task's id is logged for resume, and the task stays tracked: its check
    is planned again (the scheduler does not wait for the lost answer) and sent from a check
    task of the runner's until the task ends."""
    server = Server(running=0)
    released = asyncio.Event()
    on_wire = asyncio.Event()

    async def hold() -> None:
        on_wire.set()
        await released.wait()

    server.hold = hold
    async with nb.Client(
        "apixo", api_key="k", transport=ScriptedTransport(server), clock=clock, limits=LIMITS
    ) as client:
        scheduler = Scheduler.for_clock(clock)
        caller = asyncio.ensure_future(client.generate("a cow"))
        await clock.run_until(on_wire.is_set, step=0.5, limit=300.0)
        assert server.senders == [caller]
        (account,) = scheduler._accounts.values()
        (entry,) = account.entries
        task = entry.payload
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert "a-cow" in caplog.text  # its id, for resume
        # Not left "in flight": checked again at once, not at its deadline (10 minutes).
        await clock.run_until(task.done, step=0.5, limit=5.0)
        released.set()
        assert (await task).task_id == "a-cow"
    assert len(server.senders) == 2
    assert server.senders[1] is not caller


@handover
async def test_a_caller_cancelled_as_its_check_is_handed_gives_it_back(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller woken to send its task's check and cancelled in the same loop iteration
    (before it could send it) gives the check back: it is sent from a check task on the
    request slot already taken, once, and the task resolves."""
    server = Server(running=0)
    take = Task._take_check
    callers: list[asyncio.Future[nb.ImageResult]] = []

    def take_then_cancel(self: Task, check: object) -> bool:
        handed = take(self, check)  # type: ignore[arg-type]
        if handed:
            callers[0].cancel()
        return handed

    monkeypatch.setattr(Task, "_take_check", take_then_cancel)
    async with nb.Client(
        "apixo", api_key="k", transport=ScriptedTransport(server), clock=clock, limits=LIMITS
    ) as client:
        task = await client.submit(nb.ImageRequest(prompt="a hen"))

        async def wait() -> nb.ImageResult:
            return await task

        callers.append(asyncio.ensure_future(wait()))
        await clock.run_until(task.done, step=0.5, limit=300.0)
        assert callers[0].cancelled()
        assert (await task).task_id == "a-hen"
    assert len(server.senders) == 1
    assert server.senders[0] is not callers[0]


async def _closed_while_on_wire(
    clock: FakeClock, prompt: str, failure: BaseException
) -> tuple[nb.ClientClosedError, list[str]]:
    """A generate() whose check is on the wire when its client closes, the check then failing
    with ``failure``: the caller's error and the kinds of the events of its task."""
    server = Server(running=0)
    released = asyncio.Event()
    on_wire = asyncio.Event()

    async def hold() -> None:
        on_wire.set()
        await released.wait()
        raise failure

    server.hold = hold
    events: list[Event] = []
    client = nb.Client(
        "apixo",
        api_key="k",
        transport=ScriptedTransport(server),
        clock=clock,
        limits=LIMITS,
        on_event=events.append,
    )
    async with client:
        caller = asyncio.ensure_future(client.generate(prompt))
        await clock.run_until(on_wire.is_set, step=0.5, limit=300.0)
    released.set()
    with pytest.raises(nb.ClientClosedError) as raised:
        await caller
    task_id = prompt.replace(" ", "-")
    return raised.value, [e.kind for e in events if getattr(e, "task_id", None) == task_id]


async def test_a_check_on_the_wire_as_the_client_closes_changes_nothing_after_the_end(
    clock: FakeClock,
) -> None:
    """A generate() whose check is on the wire when its client closes gets ClientClosedError
    with the task's id; the check's late failure (the closed connection) plans nothing and
    emits nothing after the task's ``resolved`` event."""
    error, kinds = await _closed_while_on_wire(
        clock, "a pig", nb.TransportError("connection closed")
    )
    assert error.task_id == "a-pig"
    assert kinds[-1] == "resolved", kinds


async def test_a_check_waiting_for_send_room_as_the_client_closes_is_never_sent(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A generate() whose check waits for room in the send log (a stall's backlog filled the
    window) when its client closes gets ClientClosedError at the close, not when the room
    comes, and the check is never sent: no request goes out (reopening the transport) after
    ``aclose`` returned."""
    server = Server(running=0)
    waiting = asyncio.Event()

    async def wait_room(self: Ledger) -> None:
        waiting.set()
        await clock.sleep_until(clock.now() + 5.0)

    async with nb.Client(
        "apixo", api_key="k", transport=ScriptedTransport(server), clock=clock, limits=LIMITS
    ) as client:
        scheduler = Scheduler.for_clock(clock)
        caller = asyncio.ensure_future(client.generate("a yak"))
        await clock.run_until(
            lambda: any(a.entries for a in scheduler._accounts.values()), step=0.1, limit=5.0
        )
        monkeypatch.setattr(Ledger, "has_send_room", lambda self: False)
        monkeypatch.setattr(Ledger, "take_send", lambda self: False)
        monkeypatch.setattr(Ledger, "wait_send_room", wait_room)
        await clock.run_until(waiting.is_set, step=0.5, limit=300.0)
    for _ in range(5):  # a few loop iterations, no time: the close is heard at once
        await asyncio.sleep(0)
    assert caller.done()
    await clock.advance(10.0)  # the window's room comes after the close
    with pytest.raises(nb.ClientClosedError) as raised:
        await caller
    assert raised.value.task_id == "a-yak"
    assert server.senders == []


async def test_a_check_task_waiting_for_send_room_as_its_client_closes_is_never_sent(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check waiting for room in the send log when its client closes, while another client
    keeps the runner going (its check tasks are not cancelled then), is not sent once the room
    comes: nothing goes out on the closed client's transport."""
    server = Server(running=0)
    waiting = asyncio.Event()

    async def wait_room(self: Ledger) -> None:
        waiting.set()
        await clock.sleep_until(clock.now() + 5.0)

    other = nb.Client(
        "apixo", api_key="k2", transport=ScriptedTransport(Server()), clock=clock, limits=LIMITS
    )
    async with other:
        async with nb.Client(
            "apixo", api_key="k", transport=ScriptedTransport(server), clock=clock, limits=LIMITS
        ) as client:
            scheduler = Scheduler.for_clock(clock)
            task = await client.submit(nb.ImageRequest(prompt="a gnu"))
            monkeypatch.setattr(Ledger, "has_send_room", lambda self: False)
            monkeypatch.setattr(Ledger, "take_send", lambda self: False)
            monkeypatch.setattr(Ledger, "wait_send_room", wait_room)
            await clock.run_until(waiting.is_set, step=0.5, limit=300.0)
            assert scheduler._checks  # the runner's own check task holds it
        await clock.advance(10.0)  # the window's room comes after the close
        with pytest.raises(nb.ClientClosedError):
            await task
        assert server.senders == []


@handover
async def test_a_check_failing_unexpectedly_after_the_end_emits_no_second_resolved(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A check on the wire as its client closes whose send then fails with an error its
    transport does not map (a custom transport's RuntimeError; the built-in one maps aiohttp's
    closed session) is logged, and the task, ended by the close, gets no second ``resolved``."""
    _, kinds = await _closed_while_on_wire(clock, "an elk", RuntimeError("Session is closed"))
    assert kinds.count("resolved") == 1, kinds
    assert "unexpected error checking task an-elk" in caplog.text


@handover
async def test_the_caller_left_after_another_awaiter_is_cancelled_sends_the_next_check(
    clock: FakeClock,
) -> None:
    """Two callers await one task (its checks go from a check task of the runner's); once
    one of them is cancelled, the caller left is handed the task's checks again: each later
    check is sent from its own asyncio task, not from a check task."""
    server = Server(running=3)
    async with nb.Client(
        "apixo", api_key="k", transport=ScriptedTransport(server), clock=clock, limits=LIMITS
    ) as client:
        task = await client.submit(nb.ImageRequest(prompt="a ram"))

        async def wait() -> nb.ImageResult:
            return await task

        staying = asyncio.ensure_future(wait())
        leaving = asyncio.ensure_future(wait())
        await clock.run_until(lambda: len(server.senders) >= 1, step=0.5, limit=300.0)
        assert server.senders[0] is not staying
        assert server.senders[0] is not leaving
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        await clock.run_until(staying.done, step=0.5, limit=300.0)
        assert staying.result().task_id == "a-ram"
    assert len(server.senders) == 4  # three 'processing', then the end
    assert server.senders[1:] == [staying, staying, staying]


async def test_a_check_on_a_session_closed_under_an_open_client_fails_with_the_id(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A check whose transport's session was closed under the open client (a caller-owned
    session closed early: the transport raises ClientClosedError, nothing sent) ends its
    task with ClientClosedError naming the task's id and model, for resume; no ERROR line."""
    server = Server(running=0)

    async def closed() -> None:
        raise nb.ClientClosedError("the HTTP session is closed; nothing was sent")

    server.hold = closed
    async with nb.Client(
        "apixo", api_key="k", transport=ScriptedTransport(server), clock=clock, limits=LIMITS
    ) as client:
        caller = asyncio.ensure_future(client.generate("a bat"))
        await clock.run_until(caller.done, step=0.5, limit=300.0)
        with pytest.raises(nb.ClientClosedError) as raised:
            await caller
    assert (raised.value.task_id, raised.value.model) == ("a-bat", "nano-banana-2")
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
