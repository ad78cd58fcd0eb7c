"""A paid task whose caller went away (cancelled generate, wait_for, closed client): its id is
logged once, at WARNING, with how to get its result (at INFO naming the journal when a journal
holds it); never the key or the prompt."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import pytest

import nanobanana_async as nb
from nanobanana_async._journal import Journal as JournalFile
from nanobanana_async.testing import FakeClock, HttpRequest, HttpResponse, ScriptedTransport
from tests.fakeapi import FakeApixo

PROMPT = "a secret cat prompt"


def naming(caplog: pytest.LogCaptureFixture, task_id: str) -> list[str]:
    """The package's WARNING lines that name ``task_id``."""
    word = re.compile(rf"\b{re.escape(task_id)}\b")
    return [line for line in warnings_of(caplog) if word.search(line)]


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("nanobanana_async") and record.levelno >= logging.WARNING
    ]


def infos_naming(caplog: pytest.LogCaptureFixture, task_id: str) -> list[str]:
    """The package's INFO lines that name ``task_id`` as kept in a journal (not the line each
    acceptance logs at INFO)."""
    word = re.compile(rf"\b{re.escape(task_id)}\b")
    return [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("nanobanana_async")
        and record.levelno == logging.INFO
        and word.search(record.getMessage())
        and "in the journal" in record.getMessage()
    ]


def client_of(clock: FakeClock, key: str, transport: ScriptedTransport, **kw: object) -> nb.Client:
    limits = nb.Limits(concurrent_tasks=20)
    return nb.Client(
        "apixo",
        api_key=key,
        transport=transport,
        clock=clock,
        limits=limits,
        random=lambda: 0.5,
        **kw,  # type: ignore[arg-type]  # journal= only
    )


def assert_clean(lines: list[str], canary: str) -> None:
    for line in lines:
        assert canary not in line
        assert PROMPT not in line


async def test_f18_a_generate_cancelled_after_acceptance_logs_its_id_once(
    clock: FakeClock, canary: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Cancelling a generate whose task was accepted logs the id, model and how to resume it,
    once: the task's later end logs nothing more."""
    caplog.set_level(logging.WARNING, logger="nanobanana_async")
    server = FakeApixo(clock, latency=lambda i: 30.0)
    async with client_of(clock, canary, ScriptedTransport(server)) as client:
        caller = asyncio.ensure_future(client.generate(PROMPT))
        await clock.run_until(lambda: client.statistics().pending == 1)
        assert naming(caplog, "t0") == []
        caller.cancel()
        await asyncio.sleep(0)
        assert caller.cancelled()
        (line,) = naming(caplog, "t0")
        assert "apixo" in line
        assert "client.resume('t0', model=" in line
        assert "stays tracked" in line
        submitter = client._life.submitter
        assert submitter is not None
        (entry,) = submitter.conn.entries
        await clock.run_until(entry.task.done)  # still checked to its end
        assert entry.task.state is nb.TaskState.SUCCEEDED
    assert len(naming(caplog, "t0")) == 1
    assert_clean(warnings_of(caplog), canary)


async def test_f18_a_generate_cancelled_on_the_wire_logs_the_id_when_accepted(
    clock: FakeClock, canary: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Cancelled while its create is on the wire: nothing is known then; when the create is
    accepted after, its id is logged once."""
    caplog.set_level(logging.WARNING, logger="nanobanana_async")
    server = FakeApixo(clock, latency=lambda i: 30.0)
    answer: asyncio.Future[HttpResponse] = asyncio.get_running_loop().create_future()

    def held(request: HttpRequest) -> asyncio.Future[HttpResponse] | None:
        return answer if request.kind == "submit" and not answer.done() else None

    transport = ScriptedTransport(lambda request: held(request) or server(request))
    async with client_of(clock, canary, transport) as client:
        caller = asyncio.ensure_future(client.generate(PROMPT))
        await clock.run_until(lambda: bool(transport.requests))
        caller.cancel()
        await asyncio.sleep(0)
        assert caller.cancelled()
        assert warnings_of(caplog) == []
        answer.set_result(server(transport.requests[0]))  # accepted after the caller left
        await clock.run_until(lambda: client.statistics().pending == 1)
        (line,) = naming(caplog, "t0")
        assert "had stopped waiting" in line
        assert "client.resume('t0', model=" in line
    assert len(naming(caplog, "t0")) == 1
    assert_clean(warnings_of(caplog), canary)


async def test_f18_a_submit_cancelled_on_the_wire_logs_the_id_when_accepted(
    clock: FakeClock, canary: str, caplog: pytest.LogCaptureFixture
) -> None:
    """submit()'s caller cancelled while the create is on the wire never gets its Task: the
    accepted id is logged once."""
    caplog.set_level(logging.WARNING, logger="nanobanana_async")
    server = FakeApixo(clock, latency=lambda i: 30.0)
    answer: asyncio.Future[HttpResponse] = asyncio.get_running_loop().create_future()

    def held(request: HttpRequest) -> asyncio.Future[HttpResponse] | None:
        return answer if request.kind == "submit" and not answer.done() else None

    transport = ScriptedTransport(lambda request: held(request) or server(request))
    async with client_of(clock, canary, transport) as client:
        caller = asyncio.ensure_future(client.submit(nb.ImageRequest(prompt=PROMPT)))
        await clock.run_until(lambda: bool(transport.requests))
        caller.cancel()
        await asyncio.sleep(0)
        answer.set_result(server(transport.requests[0]))
        await clock.run_until(lambda: client.statistics().pending == 1)
        assert len(naming(caplog, "t0")) == 1
    assert len(naming(caplog, "t0")) == 1


async def test_f18_wait_for_timing_out_around_generate_logs_the_id(
    clock: FakeClock, canary: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``asyncio.wait_for(client.generate(...), t)`` timing out after acceptance logs the id."""
    caplog.set_level(logging.WARNING, logger="nanobanana_async")
    server = FakeApixo(clock, latency=lambda i: 30.0)
    async with client_of(clock, canary, ScriptedTransport(server)) as client:
        # wait_for runs on the loop's real clock; the fake one never moves the task on.
        job = asyncio.ensure_future(asyncio.wait_for(client.generate(PROMPT), 0.2))
        await clock.run_until(lambda: client.statistics().pending == 1)
        with pytest.raises(TimeoutError):
            await job
        assert len(naming(caplog, "t0")) == 1
    assert len(naming(caplog, "t0")) == 1
    assert_clean(warnings_of(caplog), canary)


async def test_a_generate_that_completes_or_fails_logs_no_warning(
    clock: FakeClock, canary: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A generate whose caller waits to the end, and a submitted task awaited to its end, log
    no WARNING at all."""
    caplog.set_level(logging.WARNING, logger="nanobanana_async")
    server = FakeApixo(clock, latency=lambda i: 5.0)
    async with client_of(clock, canary, ScriptedTransport(server)) as client:
        job = asyncio.ensure_future(client.generate(PROMPT))
        task = await client.submit(nb.ImageRequest(prompt="a dog"))
        await clock.run_until(lambda: job.done() and task.done())
        assert {job.result().task_id, (await task).task_id} == {"t0", "t1"}
    assert warnings_of(caplog) == []


async def test_f18_cancel_then_aclose_in_the_same_turn_logs_the_id_once(
    clock: FakeClock, canary: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``t.cancel(); await client.aclose()``: the ClientClosedError the close makes reaches no
    caller, so the id is logged, once, whichever of the two sees it first."""
    caplog.set_level(logging.WARNING, logger="nanobanana_async")
    server = FakeApixo(clock, latency=lambda i: 30.0)
    client = client_of(clock, canary, ScriptedTransport(server))
    async with client:
        caller = asyncio.ensure_future(client.generate(PROMPT))
        await clock.run_until(lambda: client.statistics().pending == 1)
        caller.cancel()
        await client.aclose()
    await asyncio.sleep(0)
    assert caller.cancelled()
    (line,) = naming(caplog, "t0")
    assert "model" in line
    assert "client.resume(" in line
    assert_clean(warnings_of(caplog), canary)


async def test_f18_cancel_then_aclose_later_logs_the_id_once(
    clock: FakeClock, canary: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A generate cancelled, then the client closed turns later: the cancel logged the id; the
    close, which fails the task, does not log it again."""
    caplog.set_level(logging.WARNING, logger="nanobanana_async")
    server = FakeApixo(clock, latency=lambda i: 30.0)
    async with client_of(clock, canary, ScriptedTransport(server)) as client:
        caller = asyncio.ensure_future(client.generate(PROMPT))
        await clock.run_until(lambda: client.statistics().pending == 1)
        caller.cancel()
        await asyncio.sleep(0)
        await clock.advance(1.0)
    assert len(naming(caplog, "t0")) == 1


async def test_f18_aclose_names_every_unheard_task_in_one_line(
    clock: FakeClock, canary: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Twelve cancelled generates closed in the same turn: one WARNING line naming all twelve
    ids (without a journal the log is the only place they are kept), not twelve lines."""
    caplog.set_level(logging.WARNING, logger="nanobanana_async")
    server = FakeApixo(clock, latency=lambda i: 30.0)
    client = client_of(clock, canary, ScriptedTransport(server))
    async with client:
        callers = [asyncio.ensure_future(client.generate(f"{PROMPT} {i}")) for i in range(12)]
        await clock.run_until(lambda: client.statistics().pending == 12)
        for caller in callers:
            caller.cancel()
        await client.aclose()
    await asyncio.sleep(0)
    lines = warnings_of(caplog)
    assert len(lines) == 1
    (line,) = lines
    assert "12 accepted apixo task(s)" in line
    assert line.count("(model ") == 12
    assert all(f"{task_id} (model " in line for task_id in server.tasks)
    assert_clean(lines, canary)


async def test_f18_a_journaled_generate_cancelled_after_acceptance_notes_its_id_at_info(
    clock: FakeClock, canary: str, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """With a journal the id is recorded there: the cancelled generate names it once at INFO
    with the journal's path, and logs no WARNING (nothing is lost)."""
    caplog.set_level(logging.INFO, logger="nanobanana_async")
    server = FakeApixo(clock, latency=lambda i: 30.0)
    journal = tmp_path / "run.db"
    async with client_of(clock, canary, ScriptedTransport(server), journal=journal) as client:
        submitter = client._life.submitter
        assert submitter is not None
        caller = asyncio.ensure_future(client.generate(PROMPT))
        await clock.run_until(lambda: client.statistics().pending == 1)
        (entry,) = submitter.conn.entries
        for _ in range(500):  # the journal writes in a thread: real time, bounded
            if entry.task._waiters is not None:
                break
            await asyncio.sleep(0.01)
        assert entry.task._waiters is not None  # submit() returned: generate awaits the task
        caller.cancel()
        await asyncio.sleep(0)
        assert caller.cancelled()
        (line,) = infos_naming(caplog, "t0")
        assert str(journal.resolve()) in line
    assert warnings_of(caplog) == []
    assert len(infos_naming(caplog, "t0")) == 1
    assert canary.encode() not in journal.read_bytes()


async def test_f18_a_submit_cancelled_in_the_turn_its_task_is_accepted_logs_the_id(
    clock: FakeClock, canary: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The create hands the Task to submit()'s caller and the caller is cancelled before it
    resumes: the Task never reaches it, so its id is logged once."""
    caplog.set_level(logging.WARNING, logger="nanobanana_async")
    server = FakeApixo(clock, latency=lambda i: 30.0)
    answer: asyncio.Future[HttpResponse] = asyncio.get_running_loop().create_future()

    def held(request: HttpRequest) -> asyncio.Future[HttpResponse] | None:
        return answer if request.kind == "submit" and not answer.done() else None

    transport = ScriptedTransport(lambda request: held(request) or server(request))
    async with client_of(clock, canary, transport) as client:
        caller = asyncio.ensure_future(client.submit(nb.ImageRequest(prompt=PROMPT)))
        await clock.run_until(lambda: bool(transport.requests))
        answer.set_result(server(transport.requests[0]))
        for _ in range(100):
            if client.statistics().pending == 1:
                break
            await asyncio.sleep(0)
        assert not caller.done()  # handed over, not yet resumed
        caller.cancel()
        await asyncio.sleep(0)
        assert caller.cancelled()
        assert len(naming(caplog, "t0")) == 1
        assert "submit() was cancelled after" in naming(caplog, "t0")[0]
    assert len(naming(caplog, "t0")) == 1


async def test_f18_aclose_stopping_a_create_whose_caller_left_says_it_may_be_paid(
    clock: FakeClock, canary: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A generate cancelled while its create is on the wire, then aclose() stops that create:
    no id exists, and one WARNING says a task may have been accepted and paid for."""
    caplog.set_level(logging.WARNING, logger="nanobanana_async")
    answer: asyncio.Future[HttpResponse] = asyncio.get_running_loop().create_future()
    server = FakeApixo(clock, latency=lambda i: 30.0)

    def held(request: HttpRequest) -> asyncio.Future[HttpResponse] | None:
        return answer if request.kind == "submit" else None

    transport = ScriptedTransport(lambda request: held(request) or server(request))
    async with client_of(clock, canary, transport) as client:
        caller = asyncio.ensure_future(client.generate(PROMPT))
        await clock.run_until(lambda: bool(transport.requests))
        caller.cancel()
        await asyncio.sleep(0)
        assert warnings_of(caplog) == []
    (line,) = warnings_of(caplog)
    assert "unknown outcome" in line
    assert "may have been accepted" in line
    assert_clean([line], canary)


async def test_f18_aclose_stopping_a_local_create_whose_caller_left_logs_nothing(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The same on the local simulator: nothing is paid there, so nothing is said (the CLI's
    Ctrl-C during a local create stays one line)."""
    caplog.set_level(logging.WARNING, logger="nanobanana_async")
    answer: asyncio.Future[HttpResponse] = asyncio.get_running_loop().create_future()
    transport = ScriptedTransport(lambda request: answer)
    async with nb.Client("local", transport=transport, clock=clock) as client:
        caller = asyncio.ensure_future(client.generate(PROMPT))
        await clock.run_until(lambda: bool(transport.requests))
        caller.cancel()
        await asyncio.sleep(0)
    assert caller.cancelled()
    assert warnings_of(caplog) == []


async def test_f18_aclose_stopping_a_create_its_caller_awaits_logs_nothing(
    clock: FakeClock, canary: str, caplog: pytest.LogCaptureFixture
) -> None:
    """aclose() stopping a create whose caller still waits: the caller hears it (as
    SubmitOutcomeUnknownError), so nothing is logged."""
    caplog.set_level(logging.WARNING, logger="nanobanana_async")
    answer: asyncio.Future[HttpResponse] = asyncio.get_running_loop().create_future()

    def held(request: HttpRequest) -> asyncio.Future[HttpResponse] | None:
        return answer

    transport = ScriptedTransport(held)
    async with client_of(clock, canary, transport) as client:
        caller = asyncio.ensure_future(client.generate(PROMPT))
        await clock.run_until(lambda: bool(transport.requests))
    with pytest.raises(nb.SubmitOutcomeUnknownError):
        await caller
    assert warnings_of(caplog) == []


async def test_f18_a_router_generate_cancelled_after_acceptance_logs_its_id_once(
    clock: FakeClock, canary: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Router.generate cancelled after its account accepted the task logs the id once."""
    caplog.set_level(logging.WARNING, logger="nanobanana_async")
    server = FakeApixo(clock, latency=lambda i: 30.0)
    client = client_of(clock, canary, ScriptedTransport(server))
    async with nb.Router([client], owns_clients=True) as router:
        caller = asyncio.ensure_future(router.generate(PROMPT))
        await clock.run_until(lambda: client.statistics().pending == 1)
        await asyncio.sleep(0)
        caller.cancel()
        await asyncio.sleep(0)
        assert caller.cancelled()
        (line,) = naming(caplog, "t0")
        assert "client.resume('t0', model=" in line
    assert len(naming(caplog, "t0")) == 1
    assert_clean(warnings_of(caplog), canary)


async def test_f18_with_a_journal_a_stopped_create_of_a_caller_that_left_is_not_logged(
    clock: FakeClock, canary: str, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """With a journal the stopped create's intent is kept (a rerun reports it of unknown
    outcome), so the close logs nothing for it: the CLI's Ctrl-C stays one line."""
    caplog.set_level(logging.WARNING, logger="nanobanana_async")
    answer: asyncio.Future[HttpResponse] = asyncio.get_running_loop().create_future()

    def held(request: HttpRequest) -> asyncio.Future[HttpResponse] | None:
        return answer

    transport = ScriptedTransport(held)
    journal = tmp_path / "run.db"
    async with client_of(clock, canary, transport, journal=journal) as client:
        caller = asyncio.ensure_future(client.generate(PROMPT))
        await clock.run_until(lambda: bool(transport.requests))
        caller.cancel()
        await asyncio.sleep(0)
    assert warnings_of(caplog) == []
    async with client_of(clock, canary, ScriptedTransport(held), journal=journal) as rerun:
        with pytest.raises(nb.SubmitOutcomeUnknownError):
            await rerun.generate(PROMPT)


async def test_f18_with_a_journal_a_create_accepted_after_its_caller_left_is_one_info_line(
    clock: FakeClock, canary: str, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """A journaled generate cancelled while its create is on the wire, accepted after: the
    id is in the journal (a rerun re-attaches it), so no WARNING (a batch's Ctrl-C stays one
    line on stderr) and one INFO line naming the id and the journal."""
    caplog.set_level(logging.DEBUG, logger="nanobanana_async")
    server = FakeApixo(clock, latency=lambda i: 30.0)
    answer: asyncio.Future[HttpResponse] = asyncio.get_running_loop().create_future()

    def held(request: HttpRequest) -> asyncio.Future[HttpResponse] | None:
        return answer if request.kind == "submit" and not answer.done() else None

    transport = ScriptedTransport(lambda request: held(request) or server(request))
    journal = tmp_path / "run.db"
    async with client_of(clock, canary, transport, journal=journal) as client:
        caller = asyncio.ensure_future(client.generate(PROMPT))
        await clock.run_until(lambda: bool(transport.requests))
        caller.cancel()
        await asyncio.sleep(0)
        assert caller.cancelled()
        answer.set_result(server(transport.requests[0]))  # accepted after the caller left
        await clock.run_until(lambda: client.statistics().pending == 1)
        for _ in range(500):  # the journal writes in a thread: real time, bounded
            if infos_naming(caplog, "t0"):
                break
            await asyncio.sleep(0.01)
        (line,) = infos_naming(caplog, "t0")
        assert "had stopped waiting" in line
        assert str(journal.resolve()) in line
    assert warnings_of(caplog) == []
    assert len(infos_naming(caplog, "t0")) == 1
    assert_clean([record.getMessage() for record in caplog.records], canary)
    async with client_of(clock, canary, ScriptedTransport(server), journal=journal) as rerun:
        task = await rerun.submit(nb.ImageRequest(prompt=PROMPT))
        assert task.id == "t0"  # re-attached from the journal, not paid for again
    assert len(server.tasks) == 1


async def test_f18_with_a_journal_aclose_notes_the_journal_once_and_warns_of_the_rest(
    clock: FakeClock, canary: str, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """Closed in the turn its callers were cancelled: the journaled tasks are one INFO line
    with their count and the journal; a task resumed by id (not in the journal) is still
    named, with its resume call, in the one WARNING."""
    caplog.set_level(logging.INFO, logger="nanobanana_async")
    server = FakeApixo(clock, latency=lambda i: 30.0)
    journal = tmp_path / "run.db"
    client = client_of(clock, canary, ScriptedTransport(server), journal=journal)
    async with client:
        submitted = [await client.submit(nb.ImageRequest(prompt=f"{PROMPT} {i}")) for i in range(3)]
        resumed = client.resume("elsewhere-7", model="nano-banana-2")
        callers = [asyncio.ensure_future(_await(t)) for t in [*submitted, resumed]]
        await asyncio.sleep(0)
        for caller in callers:
            caller.cancel()
        await client.aclose()
    await asyncio.sleep(0)
    (warning,) = warnings_of(caplog)
    assert "1 accepted apixo task(s)" in warning
    assert "elsewhere-7 (model " in warning
    assert "client.resume(" in warning
    assert not any(task.id in warning for task in submitted)
    closing = [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.INFO and "the client closed while" in record.getMessage()
    ]
    assert closing == [
        f"the client closed while 3 accepted apixo task(s) no caller waits for were pending: "
        f"they run on and are paid for; their ids are in the journal {journal.resolve()}, and "
        "a client with that journal resumes them"
    ]
    assert_clean(warnings_of(caplog) + closing, canary)


async def _await(task: nb.Task) -> object:
    return await task


async def test_f18_a_create_whose_caller_left_and_journal_failed_warns_with_its_id(
    clock: FakeClock,
    canary: str,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Accepted after its caller left, and the journal could not record it (disk full): the
    StorageError holding the id reaches no one, so the id goes to one WARNING line."""
    caplog.set_level(logging.WARNING, logger="nanobanana_async")

    async def full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    server = FakeApixo(clock, latency=lambda i: 30.0)
    answer: asyncio.Future[HttpResponse] = asyncio.get_running_loop().create_future()

    def held(request: HttpRequest) -> asyncio.Future[HttpResponse] | None:
        return answer if request.kind == "submit" and not answer.done() else None

    transport = ScriptedTransport(lambda request: held(request) or server(request))
    async with client_of(clock, canary, transport, journal=tmp_path / "run.db") as client:
        caller = asyncio.ensure_future(client.generate(PROMPT))
        await clock.run_until(lambda: bool(transport.requests))
        caller.cancel()
        await asyncio.sleep(0)
        monkeypatch.setattr(JournalFile, "record_submitted", full)
        answer.set_result(server(transport.requests[0]))
        await clock.run_until(lambda: client.statistics().pending == 1)
        for _ in range(500):  # the journal's thread: real time, bounded
            if naming(caplog, "t0"):
                break
            await asyncio.sleep(0.01)
        (line,) = naming(caplog, "t0")
        assert "client.resume('t0', model=" in line
    assert len(naming(caplog, "t0")) == 1
    assert_clean(warnings_of(caplog), canary)


@pytest.mark.parametrize("follows", ["hedge", "resubmit_failed"])
async def test_f18_with_a_journal_a_followed_router_generate_cancelled_is_one_info_line(
    clock: FakeClock,
    canary: str,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    follows: str,
) -> None:
    """A Router that follows its tasks (hedges or resubmits) hands the caller its own task:
    cancelled after acceptance, it names the accepting account's journal in one INFO line,
    with no WARNING (the journal holds the id), as a lone journaled client does."""
    caplog.set_level(logging.INFO, logger="nanobanana_async")
    servers = [FakeApixo(clock, latency=lambda i: 30.0) for _ in range(2)]
    journals = [tmp_path / "a.db", tmp_path / "b.db"]
    clients = [
        client_of(clock, canary, ScriptedTransport(s), journal=j)
        for s, j in zip(servers, journals, strict=True)
    ]
    option: dict[str, object] = (
        {"hedge": nb.Hedge()} if follows == "hedge" else {"resubmit_failed": True}
    )
    async with nb.Router(clients, owns_clients=True, **option) as router:  # type: ignore[arg-type]  # one option
        caller = asyncio.ensure_future(router.generate(PROMPT))
        await clock.run_until(lambda: any(s.tasks for s in servers), limit=5.0)
        for _ in range(500):  # the journal writes in a thread: real time, bounded
            outers = router._follower._outers
            if outers and next(iter(outers))._waiters is not None:
                break
            await asyncio.sleep(0.01)
        (outer,) = router._follower._outers
        assert outer._waiters is not None  # submit() returned: generate awaits the task
        caller.cancel()
        await asyncio.sleep(0)
        assert caller.cancelled()
        (where,) = [j for s, j in zip(servers, journals, strict=True) if s.tasks]
        (line,) = infos_naming(caplog, "t0")
        assert str(where.resolve()) in line
    assert warnings_of(caplog) == []
    assert len(infos_naming(caplog, "t0")) == 1
    assert_clean([record.getMessage() for record in caplog.records], canary)
