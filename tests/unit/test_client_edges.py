"""The library's edges: event loops, use after close, lone strings, unclosed clients."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import logging
import pickle
import sqlite3
import warnings
from pathlib import Path

import pytest

import nanobanana_async as nb
from nanobanana_async._journal import Journal as JournalFile
from nanobanana_async.events import EventStream
from nanobanana_async.testing import (
    FakeClock,
    HttpRequest,
    HttpResponse,
    Latency,
    ScriptedTransport,
    Simulator,
    json_response,
)
from tests.fakeapi import FakeApixo
from tests.redis_server import RedisServer


def make_client(clock: FakeClock) -> tuple[nb.Client, ScriptedTransport]:
    transport = ScriptedTransport(FakeApixo(clock))
    client = nb.Client("apixo", api_key="k", transport=transport, clock=clock, random=lambda: 0.5)
    return client, transport


def test_a_client_used_from_a_second_loop_fails_at_once() -> None:
    """Reused across two asyncio.run calls: ConfigurationError, not a hang or a bare
    'Event loop is closed', and nothing is sent."""
    client, transport = make_client(FakeClock(1000.0))

    async def first() -> None:
        await client.__aenter__()

    async def second() -> None:
        with pytest.raises(nb.ConfigurationError, match="bound to the event loop"):
            await asyncio.wait_for(client.generate("a cat"), 5)

    asyncio.run(first())
    asyncio.run(second())
    assert transport.requests == []
    client._life.closed = True  # its loop is gone: nothing left to release


def test_aclose_from_another_loop_while_the_clients_loop_lives_raises_for_client_and_router() -> (
    None
):
    """The client's loop has not ended (it may still run its tasks): Client.aclose() and a
    Router's aclose() from another loop both raise ConfigurationError and close nothing."""
    client, _ = make_client(FakeClock(1000.0))
    router = nb.Router([client], owns_clients=True)
    home = asyncio.new_event_loop()

    async def elsewhere() -> None:
        with pytest.raises(nb.ConfigurationError, match="bound to the event loop"):
            await client.aclose()
        with pytest.raises(nb.ConfigurationError, match="bound to the event loop"):
            await router.aclose()

    try:
        home.run_until_complete(router.__aenter__())
        asyncio.run(elsewhere())
        assert not client._life.closed
        assert not router._closed
        home.run_until_complete(router.aclose())  # its own loop closes it as before
        assert client._life.closed
    finally:
        home.close()


def test_aclose_after_the_clients_loop_ended_releases_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A client whose asyncio.run returned with a task pending can still be closed from the
    next loop: no error, its journal released (a new client opens it), one DEBUG line, no
    'unclosed' warning, and later calls raise ClientClosedError."""
    caplog.set_level(logging.DEBUG, logger="nanobanana_async")
    clock = FakeClock(1000.0)
    journal = tmp_path / "j.db"
    transport = ScriptedTransport(FakeApixo(clock, latency=lambda i: 30.0))
    client = nb.Client("apixo", api_key="k", transport=transport, clock=clock, journal=journal)

    async def first() -> None:
        await client.__aenter__()
        await client.submit(nb.ImageRequest(prompt="a cat"))

    async def second() -> None:
        await client.aclose()
        with pytest.raises(nb.ClientClosedError):
            await client.generate("a cat")
        again = nb.Client(
            "apixo",
            api_key="k",
            transport=ScriptedTransport(FakeApixo(clock)),
            clock=clock,
            journal=journal,
        )
        async with again:
            pass

    asyncio.run(first())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(second())
        gc.collect()
    assert client._life.closed
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    (record,) = [r for r in caplog.records if "after its event loop ended" in r.getMessage()]
    assert record.levelno == logging.DEBUG
    assert "1 task(s)" in record.getMessage()


def test_a_router_closed_after_its_loop_ended_closes_the_clients_it_owns() -> None:
    """Router.aclose() from the next asyncio.run, as Client.aclose(): no error, and the
    clients it owns are closed (no 'unclosed Client' warning)."""
    clock = FakeClock(1000.0)
    clients = [make_client(clock)[0] for _ in range(2)]
    router = nb.Router(clients, owns_clients=True, resubmit_failed=True)
    streams: list[EventStream] = []

    async def first() -> None:
        await router.__aenter__()
        await router.submit(nb.ImageRequest(prompt="a cat"))
        streams.append(router.events())  # its reader went with the loop

    asyncio.run(first())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(router.aclose())
        gc.collect()
    assert all(c._life.closed for c in clients)
    assert router._closed
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_a_task_awaited_from_a_second_loop_says_to_resume_it_there() -> None:
    """A Task submitted in one asyncio.run and awaited in the next (await task, result(),
    result(timeout)): a ConfigurationError naming the task and the fix (a Client created in
    this loop resumes it), not asyncio's "attached to a different loop" RuntimeError, nor a
    TaskTimeoutError saying "still tracked" when nothing tracks it here."""
    client, _ = make_client(FakeClock(1000.0))
    held: list[nb.Task] = []

    async def first() -> None:
        held.append(await client.submit(nb.ImageRequest(prompt="a cat")))

    asyncio.run(first())
    (task,) = held
    assert task.id is not None
    waits = {
        "await": lambda: task,
        "result": lambda: task.result(),
        "result(timeout)": lambda: task.result(timeout=5),
    }
    for name, wait in waits.items():

        async def second(wait: object = wait) -> None:
            await asyncio.wait_for(wait(), 5)  # type: ignore[operator]

        with pytest.raises(nb.ConfigurationError) as info:
            asyncio.run(second())
        message = str(info.value)
        assert task.id in message, name
        assert "resume" in message, name
        assert "inside the running event loop" in message, name
    client._life.closed = True  # its loop is gone: nothing left to release


def test_an_event_stream_read_from_a_second_loop_fails_at_once() -> None:
    """A client's event stream opened in one asyncio.run and read in the next, or opened
    there (by the client or a Router over it): ConfigurationError at once, not a read that
    waits for ever (the client's loop is gone, so no event can come)."""
    client, _ = make_client(FakeClock(1000.0))
    held: list[EventStream] = []

    async def first() -> None:
        await client.__aenter__()
        held.append(client.events())

    async def read() -> None:
        await asyncio.wait_for(held[0].__anext__(), 1)

    async def reopen() -> None:
        client.events()

    async def through_a_router() -> None:
        nb.Router([client]).events()

    asyncio.run(first())
    with pytest.raises(nb.ConfigurationError, match="inside the running event loop"):
        asyncio.run(read())
    with pytest.raises(nb.ConfigurationError, match="bound to the event loop"):
        asyncio.run(reopen())
    with pytest.raises(nb.ConfigurationError, match="bound to the event loop"):
        asyncio.run(through_a_router())
    client._life.closed = True  # its loop is gone: nothing left to release


def test_a_closed_client_used_from_a_second_loop_names_the_fix() -> None:
    """`async with client` in one asyncio.run, then again in the next: ClientClosedError
    (as on its own loop) whose message says to create a new Client inside the running loop."""
    client, transport = make_client(FakeClock(1000.0))

    async def first() -> None:
        async with client:
            pass

    async def second() -> None:
        async with client:
            pass

    asyncio.run(first())
    with pytest.raises(nb.ClientClosedError, match="create a new Client inside the running"):
        asyncio.run(second())
    assert transport.requests == []


async def test_image_urls_accepts_a_single_string(clock: FakeClock) -> None:
    client, transport = make_client(clock)
    async with client:
        job = asyncio.ensure_future(client.generate("a cat", image_urls="https://img.test/a.png"))
        await clock.run_until(job.done)
        job.result()
    body = transport.requests[0].json
    assert isinstance(body, dict)
    assert body["input"]["image_urls"] == ["https://img.test/a.png"]  # type: ignore[index]


async def test_download_after_aclose_raises_client_closed(clock: FakeClock, tmp_path: Path) -> None:
    client, _ = make_client(clock)
    async with client:
        pass
    now = dt.datetime.now(dt.UTC)
    result = nb.ImageResult(
        task_id="t0",
        provider="apixo",
        model="nano-banana-2",
        urls=("http://127.0.0.1:9/a.png",),
        request=None,
        submitted_at=now,
        completed_at=now,
    )
    with pytest.raises(nb.ClientClosedError) as info:
        await client.download(result, tmp_path / "a.png")
    assert info.value.task_id == "t0"
    assert list(tmp_path.iterdir()) == []


def test_an_unclosed_client_warns_with_its_name() -> None:
    """Dropped after use without aclose(): one ResourceWarning naming the client."""
    clock = FakeClock(1000.0)

    async def leak() -> None:
        client, _ = make_client(clock)
        await client.__aenter__()

    async def tidy() -> None:
        client, _ = make_client(clock)
        async with client:
            pass
        unused, _ = make_client(clock)
        del client, unused

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(tidy())
        gc.collect()
        assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
        asyncio.run(leak())
        gc.collect()
    messages = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert messages == [
        "unclosed Client(provider='apixo', base_url='https://api.apixo.ai/api/v1'): "
        "use 'async with' or 'await client.aclose()'"
    ]


def test_a_client_whose_async_with_fails_to_enter_is_closed(tmp_path: Path) -> None:
    """`async with Client(journal=...)` on a journal of another URL raises at entry, where no
    __aexit__ runs: the client is closed anyway, no 'unclosed Client' warning at exit."""
    clock = FakeClock(1000.0)
    path = tmp_path / "j.db"

    async def enter(url: str) -> None:
        transport = ScriptedTransport(FakeApixo(clock))
        async with nb.Client(
            "apixo", api_key="k", base_url=url, transport=transport, clock=clock, journal=path
        ):
            pass

    asyncio.run(enter("https://one.test/api/v1"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(nb.ConfigurationError, match="belongs to apixo at https://one"):
            asyncio.run(enter("https://two.test/api/v1"))
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


async def test_aclose_inside_a_cancelled_task_closes_everything(clock: FakeClock) -> None:
    """Ctrl-C cancels the main task while tasks run: `async with` still closes the transport
    (no 'Unclosed client session' at exit) and the cancellation goes on."""
    client, transport = make_client(clock)
    started = asyncio.Event()

    async def batch() -> None:
        async with client:
            await client.submit(nb.ImageRequest(prompt="a cat"))
            started.set()
            await asyncio.Event().wait()

    main = asyncio.ensure_future(batch())
    await clock.run_until(started.is_set)
    main.cancel()
    with pytest.raises(asyncio.CancelledError):
        await main
    assert transport.closed


async def test_aclose_stops_a_submit_in_flight(clock: FakeClock) -> None:
    """aclose() while a create is on the wire: the caller hears the outcome is unknown, and
    nothing is sent after the transport closed."""
    hung: asyncio.Future[nb.ImageResult] = asyncio.get_running_loop().create_future()
    transport = ScriptedTransport(lambda request: hung)
    client = nb.Client("apixo", api_key="k", transport=transport, clock=clock)
    await client.__aenter__()
    submit = asyncio.ensure_future(client.submit(nb.ImageRequest(prompt="a cat")))
    await clock.run_until(lambda: bool(transport.requests))
    await client.aclose()
    with pytest.raises(nb.SubmitOutcomeUnknownError, match="may have been accepted"):
        await asyncio.wait_for(submit, 10)  # a bound for the failure case only
    assert len(transport.requests) == 1


async def test_a_journal_that_cannot_record_an_accepted_task_never_loses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The create was accepted (paid) but the journal write fails (disk full): the caller gets
    StorageError carrying the task id, the task is still tracked to its end, and its slot is
    freed then, so the next submit is not stuck behind it."""

    async def full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    clock = FakeClock(0.0)
    server = FakeApixo(clock, latency=lambda i: 3.0)
    limits = nb.Limits(concurrent_tasks=1)
    client = nb.Client(
        "apixo",
        api_key="k",
        transport=ScriptedTransport(server),
        clock=clock,
        limits=limits,
        journal=tmp_path / "j.db",
    )
    async with client:
        monkeypatch.setattr(JournalFile, "record_submitted", full)
        with pytest.raises(nb.StorageError) as caught:
            await client.submit(nb.ImageRequest(prompt="a cat"))
        assert caught.value.task_id == "t0"
        assert client.statistics().pending == 1  # still tracked
        kept = caught.value.task
        assert kept is not None
        assert kept.id == "t0"
        copy = pickle.loads(pickle.dumps(caught.value))  # noqa: S301  our own bytes
        assert (copy.task_id, copy.task) == ("t0", None)  # the live task stays here
        monkeypatch.undo()
        second = asyncio.ensure_future(client.generate("a dog"))
        await clock.run_until(second.done, limit=60)
        assert (await second).task_id == "t1"
        assert (await kept).task_id == "t0"  # the error's task is the tracked one
    assert server.count("submit") == 2


async def test_a_journal_that_cannot_record_the_intent_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk before the create: StorageError (no task id, nothing sent, not a raw
    sqlite3 error), the slot is free again, and a later submit goes through once space
    is back."""

    async def full(*_: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    clock = FakeClock(0.0)
    server = FakeApixo(clock, latency=lambda i: 3.0)
    client = nb.Client(
        "apixo",
        api_key="k",
        transport=ScriptedTransport(server),
        clock=clock,
        limits=nb.Limits(concurrent_tasks=1),
        journal=tmp_path / "j.db",
    )
    async with client:
        monkeypatch.setattr(JournalFile, "record_intent", full)
        with pytest.raises(nb.StorageError, match="no task was created") as caught:
            await client.submit(nb.ImageRequest(prompt="a cat"))
        assert caught.value.task_id is None
        assert caught.value.task is None
        assert server.count("submit") == 0
        assert client.statistics().in_flight == 0
        monkeypatch.undo()
        later = asyncio.ensure_future(client.generate("a cat"))
        await clock.run_until(later.done, limit=60)
        assert (await later).task_id == "t0"
    assert server.count("submit") == 1


def _journal_client(tmp_path: Path, clock: FakeClock, server: FakeApixo) -> nb.Client:
    return nb.Client(
        "apixo",
        api_key="k",
        transport=ScriptedTransport(server),
        clock=clock,
        limits=nb.Limits(concurrent_tasks=1),
        journal=tmp_path / "j.db",
    )


async def test_two_clients_on_one_journal_racing_one_request_send_it_once(
    tmp_path: Path,
) -> None:
    """Two live clients sharing a journal submit the same request at once: one create is
    sent and both callers get its task (the second re-attached, as a rerun is), whenever the
    journal's thread writes the first one's rows."""
    clock = FakeClock(0.0)
    server = FakeApixo(clock, latency=lambda i: 3.0)
    request = nb.ImageRequest(prompt="a cat")
    async with (
        _journal_client(tmp_path, clock, server) as first,
        _journal_client(tmp_path, clock, server) as second,
    ):
        job = asyncio.ensure_future(asyncio.gather(first.submit(request), second.submit(request)))
        await clock.run_until(job.done, limit=60)
        tasks = job.result()
        assert [task.id for task in tasks] == ["t0", "t0"]
        done = asyncio.ensure_future(asyncio.gather(*(task.result() for task in tasks)))
        await clock.run_until(done.done, limit=60)
        assert [result.task_id for result in done.result()] == ["t0", "t0"]
    assert server.count("submit") == 1


@pytest.mark.parametrize("held", ["record_intent", "record_submitted"])
async def test_a_second_client_of_a_journal_waits_for_the_first_ones_row_and_reattaches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held: str
) -> None:
    """The first client's journal thread held before its intent is written (the second then
    got DuplicateSubmitError) or before its task id is (an outcome-unknown error): the second
    caller waits for the first's submit, then re-attaches to its task; one create."""
    clock = FakeClock(0.0)
    server = FakeApixo(clock, latency=lambda i: 3.0)
    request = nb.ImageRequest(prompt="a cat")
    reached, gate = asyncio.Event(), asyncio.Event()
    original = getattr(JournalFile, held)

    async def slow(self: JournalFile, *args: object, **kwargs: object) -> None:
        reached.set()
        await gate.wait()
        await original(self, *args, **kwargs)

    async with (
        _journal_client(tmp_path, clock, server) as first,
        _journal_client(tmp_path, clock, server) as second,
    ):
        monkeypatch.setattr(JournalFile, held, slow)
        winner = asyncio.ensure_future(first.submit(request))
        await clock.run_until(reached.is_set, limit=10)
        loser = asyncio.ensure_future(second.submit(request))
        await clock.advance(5.0)
        assert not loser.done()
        gate.set()
        await clock.run_until(lambda: winner.done() and loser.done(), limit=60)
        assert winner.result().id == loser.result().id == "t0"
        ended = asyncio.ensure_future(loser.result().result())
        await clock.run_until(ended.done, limit=60)
        assert ended.result().task_id == "t0"
    assert server.count("submit") == 1


async def test_a_second_client_of_a_journal_is_told_outcome_unknown_only_when_it_is(
    tmp_path: Path,
) -> None:
    """The first client's create timed out after sending (its outcome really is unknown): the
    second caller gets SubmitOutcomeUnknownError too and sends nothing."""
    clock = FakeClock(0.0)
    server = FakeApixo(clock, latency=lambda i: 3.0)
    server.hook = lambda r: nb.RequestTimeoutError("read timed out") if r.kind == "submit" else None
    request = nb.ImageRequest(prompt="a cat")
    async with (
        _journal_client(tmp_path, clock, server) as first,
        _journal_client(tmp_path, clock, server) as second,
    ):
        both = asyncio.gather(first.submit(request), second.submit(request), return_exceptions=True)
        job = asyncio.ensure_future(both)
        await clock.run_until(job.done, limit=60)
        winner, loser = job.result()
    assert isinstance(winner, nb.SubmitOutcomeUnknownError)
    assert isinstance(loser, nb.SubmitOutcomeUnknownError)
    assert "not submitted again" in str(loser)
    assert server.count("submit") == 1


async def test_a_second_client_of_a_journal_sends_it_when_the_first_created_nothing(
    tmp_path: Path,
) -> None:
    """The first client's create was refused (401: nothing created, its intent cleared): the
    second caller, which waited for it, sends its own create; one task is made."""
    clock = FakeClock(0.0)
    server = FakeApixo(clock, latency=lambda i: 3.0)
    refusal = json_response({"code": 401, "message": "bad key", "data": None}, 401)
    answers = iter([refusal])
    server.hook = lambda r: next(answers, None) if r.kind == "submit" else None
    request = nb.ImageRequest(prompt="a cat")
    async with (
        _journal_client(tmp_path, clock, server) as first,
        _journal_client(tmp_path, clock, server) as second,
    ):
        both = asyncio.gather(first.submit(request), second.submit(request), return_exceptions=True)
        job = asyncio.ensure_future(both)
        await clock.run_until(job.done, limit=60)
        winner, loser = job.result()
        assert isinstance(winner, nb.AuthenticationError)
        assert isinstance(loser, nb.Task)
        assert loser.id == "t0"
    assert server.count("submit") == 2
    assert list(server.tasks) == ["t0"]


async def test_the_scheduler_is_a_timer_and_leaves_nothing_behind_the_last_client(
    clock: FakeClock,
) -> None:
    """The runner is one timer, not a task of its own: none runs beside the callers and the
    checks. A check in flight outlives the client that asked for it while another client is
    open, and is cancelled and awaited once the last one closes, with the timer dropped."""
    from nanobanana_async._scheduler._runner import Scheduler

    never = asyncio.Event()

    async def hang() -> HttpResponse:
        await never.wait()
        raise AssertionError("unreachable")

    transport = ScriptedTransport(lambda request: hang())
    first = nb.Client("apixo", api_key="k", transport=transport, clock=clock)
    second = nb.Client("apixo", api_key="k", transport=transport, clock=clock)
    async with first:
        scheduler = Scheduler.for_clock(clock)
        async with second:
            task = second.resume("t1", model="nano-banana-2")
            await clock.advance(11.0)  # apixo's first check is 10 s after the submit
            assert transport.count("status") == 1
            (check,) = scheduler._checks
            others = asyncio.all_tasks() - {asyncio.current_task(), check}
            assert others == set()  # no runner task, no sleeper
        assert task.done()  # its client closed: ClientClosedError
        assert not check.done()  # the other client still uses the scheduler
    assert check.cancelled()
    assert scheduler._checks == set()
    assert scheduler._timer is None
    with pytest.raises(nb.ClientClosedError):
        await task.result()


async def test_a_bug_while_failing_a_task_still_ends_it(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A status check that hits a bug ends its task with that bug even when holding the
    task's slot fails too: no caller waits for ever, and the scheduler keeps running."""
    from nanobanana_async._scheduler._runner import Scheduler

    def broken_horizon(*args: object) -> float:
        raise ValueError("horizon bug")

    monkeypatch.setattr(Scheduler, "horizon", broken_horizon)
    server = FakeApixo(clock)
    server.hook = lambda request: RuntimeError("check bug") if request.kind == "status" else None
    client = nb.Client("apixo", api_key="k", transport=ScriptedTransport(server), clock=clock)
    async with client:
        jobs = [asyncio.ensure_future(client.generate(f"a cat {i}")) for i in range(3)]
        await clock.run_until(lambda: all(job.done() for job in jobs), limit=60.0)
    for job in jobs:
        with pytest.raises(RuntimeError, match="check bug"):
            job.result()


async def test_a_submit_whose_caller_is_cancelled_on_the_wire_is_still_tracked(
    clock: FakeClock,
) -> None:
    """Cancelling submit()'s caller while its create is on the wire cancels only that caller:
    the create's answer is still read, the paid task tracked to its end and its slot freed."""
    server = FakeApixo(clock, latency=lambda i: 3.0)
    answer: asyncio.Future[HttpResponse] = asyncio.get_running_loop().create_future()

    def held(request: HttpRequest) -> asyncio.Future[HttpResponse] | None:
        return answer if request.kind == "submit" and not answer.done() else None

    transport = ScriptedTransport(lambda request: held(request) or server(request))
    limits = nb.Limits(concurrent_tasks=1)
    async with nb.Client(
        "apixo", api_key="k", transport=transport, clock=clock, limits=limits
    ) as client:
        caller = asyncio.ensure_future(client.submit(nb.ImageRequest(prompt="a cat")))
        await clock.run_until(lambda: bool(transport.requests))
        caller.cancel()
        await asyncio.sleep(0)
        assert caller.cancelled()
        answer.set_result(server(transport.requests[0]))  # accepted after the caller left
        await clock.run_until(lambda: client.statistics().pending == 1)
        # Its slot is freed when the task ends: the next submit (cap 1) then goes.
        job = asyncio.ensure_future(client.generate("a dog"))
        await clock.run_until(job.done)
        assert job.result().task_id == "t1"
    assert server.count("submit") == 2
    assert server.count("status") >= 2  # the abandoned caller's task was checked too


async def test_aclose_before_a_submits_create_started_fails_its_caller(clock: FakeClock) -> None:
    """aclose() in the same loop iteration a submit handed its create to a task of its own
    (so that task never ran): the caller hears the client closed, nothing is sent."""
    client, transport = make_client(clock)
    await client.__aenter__()
    submitter = client._life.submitter
    assert submitter is not None
    submit = asyncio.ensure_future(client.submit(nb.ImageRequest(prompt="a cat")))
    for _ in range(100):  # until the create's task is made, and before it steps
        if submitter._running:
            break
        await asyncio.sleep(0)
    assert submitter._running
    await client.aclose()
    with pytest.raises(nb.ClientClosedError):
        await asyncio.wait_for(submit, 10)  # a bound for the failure case only
    assert transport.requests == []


async def test_a_generate_cancelled_while_its_task_runs_leaves_it_tracked(
    clock: FakeClock,
) -> None:
    """Cancelling a generate() whose task was accepted detaches only that caller: the task is
    still checked to its end (its slot then freed) and keeps no waiter for the caller."""
    server = FakeApixo(clock, latency=lambda i: 30.0)
    transport = ScriptedTransport(server)
    async with nb.Client(
        "apixo", api_key="k", transport=transport, clock=clock, limits=nb.Limits(concurrent_tasks=1)
    ) as client:
        caller = asyncio.ensure_future(client.generate("a cat"))
        await clock.run_until(lambda: client.statistics().pending == 1)
        caller.cancel()
        await asyncio.sleep(0)
        assert caller.cancelled()
        submitter = client._life.submitter
        assert submitter is not None
        (entry,) = submitter.conn.entries
        assert entry.task._waiters is None  # the cancelled caller's waiter is dropped
        second = asyncio.ensure_future(client.generate("a dog"))  # waits for t0's slot
        await clock.run_until(second.done)
        assert second.result().task_id == "t1"
        assert entry.task.state is nb.TaskState.SUCCEEDED


@pytest.mark.parametrize(
    ("argument", "value", "named"),
    [
        ("api_key", 12345678, "api_key must be a string or None, got int"),
        ("base_url", 8080, "base_url must be a string or None, got int"),
        ("limits", {"requests": 5}, "limits must be a nanobanana_async.Limits or None, got dict"),
        ("retry", {"attempts": 2}, "retry must be a nanobanana_async.RetryPolicy"),
        ("timeouts", 30, "timeouts must be a nanobanana_async.Timeouts or None, got int"),
        ("session", "s", "session must be an aiohttp.ClientSession or None, got str"),
        ("callbacks", "http://x", "callbacks must be a nanobanana_async.CallbackReceiver"),
        ("journal", 5, "journal must be a file path (str or Path) or None, got int"),
        ("coordinator", 6379, "coordinator must be a redis:// URL string or None, got int"),
        ("clock", 5, "clock must be a Clock (now() and async sleep_until()) or None, got int"),
        ("clock", 0, "clock must be a Clock (now() and async sleep_until()) or None, got int"),
        ("wall_clock", 1.5, "wall_clock must be a function returning a float, got float"),
        ("random", 0.5, "random must be a function returning a float, got float"),
    ],
)
def test_a_client_argument_of_the_wrong_type_is_refused_by_name(
    argument: str, value: object, named: str
) -> None:
    """A wrong type is a ConfigurationError naming the argument at construction, not an
    AttributeError from inside the first request."""
    with pytest.raises(nb.ConfigurationError) as caught:
        nb.Client("apixo", **{"api_key": "sk-canary-wrong-types", argument: value})
    assert named in str(caught.value)
    assert "sk-canary" not in str(caught.value)


async def test_generate_given_an_image_request_points_to_submit(clock: FakeClock) -> None:
    """generate(ImageRequest(...)) says to pass the request to submit(), not that the prompt
    must be a non-empty string (it was a request); nothing is sent."""
    client, transport = make_client(clock)
    async with client:
        request = nb.ImageRequest(prompt="a cat")
        with pytest.raises(nb.InvalidRequestError, match=r"pass an ImageRequest to submit\(\)"):
            await client.generate(request)  # type: ignore[arg-type]
    assert transport.requests == []


async def test_submit_given_a_prompt_string_says_how_to_make_a_request(clock: FakeClock) -> None:
    """submit("a cat") names what it got and the two calls that take it; nothing is sent."""
    client, transport = make_client(clock)
    async with client:
        with pytest.raises(TypeError, match=r"got str: submit\(ImageRequest\(prompt=\.\.\.\)\)"):
            await client.submit("a cat")  # type: ignore[arg-type]
    assert transport.requests == []


def test_a_base_url_with_a_password_is_refused_at_construction_for_a_bearer_key() -> None:
    """base_url="http://user:pw@host/api/v1" for a bearer-key provider is a ConfigurationError
    when the client is made, not aiohttp's bare ValueError at the first request; the password
    is not echoed."""
    with pytest.raises(nb.ConfigurationError, match="must not hold a user name or password") as e:
        nb.Client("apixo", api_key="k", base_url="http://u:hunter2@127.0.0.1:9/api/v1")
    assert "hunter2" not in str(e.value)


@pytest.mark.parametrize("given", ["transport", "none"])
def test_a_base_url_with_a_password_is_refused_for_an_x_api_key_provider_too(
    clock: FakeClock, given: str
) -> None:
    """crun's key goes in x-api-key, so aiohttp never objected: the URL was kept as given and
    stored in the journal. Now refused like a bearer key's, with a transport of one's own too
    (the URL still reaches the journal and Client.base_url), the password not echoed."""
    transport = ScriptedTransport(FakeApixo(clock)) if given == "transport" else None
    with pytest.raises(nb.ConfigurationError, match="must not hold a user name or password") as e:
        nb.Client(
            "crun",
            api_key="k",
            base_url="https://u:hunter2@api.crun.test",
            transport=transport,
            clock=clock,
        )
    assert "hunter2" not in str(e.value)
    assert "x-api-key" in str(e.value)


def test_a_base_url_given_to_local_is_refused_not_ignored() -> None:
    """Client("local", base_url=...) said nothing and ran its own simulator, so requests meant
    for the server at that URL went elsewhere; NANOBANANA_BASE_URL alone is still ignored."""
    with pytest.raises(nb.ConfigurationError, match="base_url does not apply to local"):
        nb.Client("local", base_url="http://127.0.0.1:18431")


def test_a_router_sharing_its_circuits_closed_after_its_loop_ended(
    redis_server: RedisServer,
) -> None:
    """With circuits shared through Redis (the connections of the ended loop): the router
    closed from the next asyncio.run awaits nothing of the ended loop and closes its clients."""
    clock = FakeClock(1000.0)
    clients = [
        nb.Client(
            "apixo",
            api_key=f"k{i}",
            transport=ScriptedTransport(FakeApixo(clock)),
            clock=clock,
            random=lambda: 0.5,
            coordinator=redis_server.url,
        )
        for i in range(2)
    ]
    router = nb.Router(clients, owns_clients=True)

    async def first() -> None:
        await router.__aenter__()
        await router.submit(nb.ImageRequest(prompt="a cat"))

    asyncio.run(first())
    asyncio.run(router.aclose())
    assert all(c._life.closed for c in clients)


def test_an_aiohttp_client_closed_after_its_loop_ended_leaves_no_unclosed_session() -> None:
    """The default aiohttp transport, used in one asyncio.run against the loopback simulator
    and closed from the next: no 'Unclosed client session' or 'Unclosed connector' warning."""
    held: list[nb.Client] = []

    async def first() -> None:
        async with Simulator("apixo", latency=Latency(median=30.0)) as sim:
            client = nb.Client("apixo", api_key=sim.api_key, base_url=sim.base_url)
            held.append(client)
            await client.submit(nb.ImageRequest(prompt="a cat"))

    asyncio.run(first())
    (client,) = held
    session = client._settings.transport._session  # type: ignore[attr-defined]  # the aiohttp one
    assert session is not None
    assert not session.closed
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(client.aclose())
        gc.collect()
    assert session.closed  # its connector too: aiohttp's __del__ then warns of nothing
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
