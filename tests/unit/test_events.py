"""Typed events (issue 23 item 1) under a fake clock and a scripted transport: each kind is
emitted where it happens, with the fields a caller maps rows and metrics by."""

from __future__ import annotations

import asyncio
import logging

import attrs
import pytest

import nanobanana_async as nb
from nanobanana_async import events as ev
from nanobanana_async.testing import FakeClock, ScriptedTransport, json_response, settle
from tests.fakeapi import FakeApixo


def make_client(
    clock: FakeClock,
    server: FakeApixo,
    key: str = "k",
    **kwargs: object,
) -> nb.Client:
    return nb.Client(
        "apixo",
        api_key=key,
        transport=ScriptedTransport(server),
        clock=clock,
        random=lambda: 0.5,
        **kwargs,  # type: ignore[arg-type]
    )


def kinds(seen: list[ev.Event]) -> list[str]:
    return [e.kind for e in seen]


def of(seen: list[ev.Event], cls: type[ev.Event]) -> list[ev.Event]:
    return [e for e in seen if type(e) is cls]


async def run(clock: FakeClock, client: nb.Client, prompt: str = "a cat", **kw: object) -> object:
    job = asyncio.ensure_future(client.submit(nb.ImageRequest(prompt=prompt), **kw))  # type: ignore[arg-type]
    await clock.run_until(job.done)
    task = job.result()
    done = asyncio.ensure_future(task.result())
    await clock.run_until(done.done)
    return done


async def test_event_submitted_accepted_checked_resolved(clock: FakeClock) -> None:
    """A task's life is submitted, accepted, checked (one per check), resolved, in that order,
    each carrying the provider, the task id, the caller's key and the client's clock."""
    server = FakeApixo(clock)
    seen: list[ev.Event] = []
    async with make_client(clock, server, on_event=seen.append) as client:
        done = await run(clock, client, key="row-7")
    assert done.result().task_id == "t0"  # type: ignore[attr-defined]
    names = kinds(seen)
    assert names[:2] == ["submitted", "accepted"]
    assert names[-1] == "resolved"
    assert set(names[2:-1]) == {"checked"}
    assert len(names) - 3 == server.count("status")
    submitted, accepted = seen[0], seen[1]
    assert isinstance(submitted, ev.Submitted)
    assert isinstance(accepted, ev.Accepted)
    assert (submitted.attempt, submitted.model, submitted.resolution) == (1, "nano-banana-2", None)
    assert submitted.task_id is None
    assert accepted.task_id == "t0"
    assert all(e.provider == "apixo" and e.key == "row-7" and e.account is None for e in seen)
    assert [e.at for e in seen] == sorted(e.at for e in seen)
    checked = of(seen, ev.Checked)
    assert [c.checks for c in checked] == list(range(1, len(checked) + 1))  # type: ignore[attr-defined]
    assert checked[-1].state is nb.TaskState.SUCCEEDED  # type: ignore[attr-defined]
    resolved = seen[-1]
    assert isinstance(resolved, ev.Resolved)
    assert resolved.task_id == "t0"
    assert resolved.error is None
    assert resolved.result is not None
    assert resolved.result.urls == ("https://img.test/t0.png",)
    assert resolved.checks == server.count("status")
    assert resolved.callbacks == 0
    seen_done = server.tasks["t0"].seen_done_at
    assert seen_done is not None
    assert resolved.latency == pytest.approx(seen_done - accepted.at)


async def test_event_resolved_carries_the_error(clock: FakeClock) -> None:
    """A failed task's resolved event carries its typed error and no result."""
    server = FakeApixo(clock)
    seen: list[ev.Event] = []
    async with make_client(clock, server, on_event=seen.append) as client:
        done = await run(clock, client, "a cat [[fail]]")
    assert isinstance(done.exception(), nb.GenerationFailedError)  # type: ignore[attr-defined]
    resolved = seen[-1]
    assert isinstance(resolved, ev.Resolved)
    assert isinstance(resolved.error, nb.GenerationFailedError)
    assert resolved.result is None
    assert of(seen, ev.Checked)[-1].state is nb.TaskState.FAILED  # type: ignore[attr-defined]


async def test_event_refused_will_retry_then_accepted_f_retry(clock: FakeClock) -> None:
    """A connect error on a create is refused with will_retry, then sent again (attempt 2)."""
    server = FakeApixo(clock)
    failures = [nb.ConnectError("refused")]
    server.hook = lambda r: failures.pop() if r.kind == "submit" and failures else None
    seen: list[ev.Event] = []
    async with make_client(clock, server, on_event=seen.append) as client:
        await run(clock, client)
    head = [e for e in seen if e.kind in ("submitted", "refused", "accepted")]
    assert kinds(head) == ["submitted", "refused", "submitted", "accepted"]
    refused = head[1]
    assert isinstance(refused, ev.Refused)
    assert refused.will_retry
    assert refused.attempt == 1
    assert refused.status is None
    assert isinstance(refused.error, nb.ConnectError)
    assert [e.attempt for e in head if isinstance(e, ev.Submitted | ev.Accepted)] == [1, 2, 2]


async def test_event_refused_final_carries_status(clock: FakeClock) -> None:
    """A refusal that is not retried (the key refused) says so, with its HTTP status."""
    server = FakeApixo(clock)
    denied = json_response({"code": 401, "message": "bad key", "data": None}, 401)
    server.hook = lambda r: denied
    seen: list[ev.Event] = []
    async with make_client(clock, server, on_event=seen.append) as client:
        with pytest.raises(nb.AuthenticationError):
            await client.generate("a cat")
    assert kinds(seen) == ["submitted", "refused"]
    refused = seen[1]
    assert isinstance(refused, ev.Refused)
    assert (refused.status, refused.will_retry) == (401, False)
    assert isinstance(refused.error, nb.AuthenticationError)


async def test_event_outcome_unknown_carries_no_prompt(clock: FakeClock) -> None:
    """A create that timed out after sending is outcome_unknown; the event's error names the
    provider but not the prompt, and the caller's error still holds the request."""
    server = FakeApixo(clock)
    server.hook = lambda r: nb.RequestTimeoutError("read timed out") if r.kind == "submit" else None
    seen: list[ev.Event] = []
    async with make_client(clock, server, on_event=seen.append) as client:
        with pytest.raises(nb.SubmitOutcomeUnknownError) as info:
            await client.generate("a secret cat prompt")
    assert kinds(seen) == ["submitted", "outcome_unknown"]
    unknown = seen[1]
    assert isinstance(unknown, ev.OutcomeUnknown)
    assert unknown.error.provider == "apixo"
    assert str(unknown.error) == str(info.value)
    assert "secret cat" not in repr(unknown)
    assert "secret cat" not in repr(unknown.error.request)
    assert info.value.request.prompt == "a secret cat prompt"


async def test_events_carry_no_key_and_no_prompt(canary: str) -> None:
    """No event, in its repr or any field, holds the API key or the prompt text, even when the
    provider echoes the key in a refusal."""
    clock = FakeClock(1000.0)
    server = FakeApixo(clock)
    echoed = json_response({"code": 400, "message": f"bad key {canary}", "data": None}, 400)
    first = [echoed]
    server.hook = lambda r: first.pop() if r.kind == "submit" and first else None
    seen: list[ev.Event] = []
    async with make_client(clock, server, key=canary, on_event=seen.append) as client:
        with pytest.raises(nb.APIError):
            await client.generate("a hidden llama prompt")
        await run(clock, client, "a hidden llama prompt")
    assert {"refused", "accepted", "checked", "resolved"} <= set(kinds(seen))
    for event in seen:
        texts = [repr(event), str(event)]
        for field in attrs.fields(type(event)):
            value = getattr(event, field.name)
            texts += [repr(value), str(value)]
        assert not any(canary in t for t in texts), event
        assert not any("hidden llama" in t for t in texts), event


async def test_on_event_raising_does_not_break_generation(
    clock: FakeClock, caplog: pytest.LogCaptureFixture, canary: str
) -> None:
    """A callback that raises on every event is logged once (masked) and the task still ends."""

    def broken(event: ev.Event) -> None:
        raise RuntimeError(f"boom {canary}")

    server = FakeApixo(clock)
    with caplog.at_level(logging.WARNING, logger="nanobanana_async"):
        async with make_client(clock, server, key=canary, on_event=broken) as client:
            first = await run(clock, client)
            second = await run(clock, client, "a dog")
    assert first.result().urls
    assert second.result().urls
    warnings = [r.getMessage() for r in caplog.records if "event callback" in r.getMessage()]
    assert len(warnings) == 1
    assert "boom" in warnings[0]
    assert canary not in warnings[0]


async def test_nothing_listening_builds_no_event(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no listener no event is built or emitted: every site checks ``active`` first."""
    built: list[str] = []
    for cls in (ev.Submitted, ev.Accepted, ev.Checked, ev.Resolved, ev.Refused):
        init = cls.__init__

        def wrapped(self: ev.Event, *a: object, _init: object = init, **k: object) -> None:
            built.append(type(self).kind)
            _init(self, *a, **k)  # type: ignore[operator]

        monkeypatch.setattr(cls, "__init__", wrapped)
    server = FakeApixo(clock)
    failures = [nb.ConnectError("refused")]
    server.hook = lambda r: failures.pop() if r.kind == "submit" and failures else None
    async with make_client(clock, server) as client:
        await run(clock, client)
    assert built == []
    seen: list[ev.Event] = []
    server.hook = None
    async with make_client(clock, server, on_event=seen.append) as client:
        await run(clock, client)
    assert built
    assert len(built) == len(seen)


async def test_events_stream_yields_and_ends_on_close(clock: FakeClock) -> None:
    """``client.events()`` yields the events in order and ends when the client closes."""
    server = FakeApixo(clock)
    client = make_client(clock, server)
    got: list[ev.Event] = []

    async def consume(stream: ev.EventStream) -> None:
        async for event in stream:
            got.append(event)

    async with client:
        stream = client.events()
        other = client.events()
        reader = asyncio.ensure_future(consume(stream))
        await run(clock, client)
        await settle()
        assert not reader.done()
    await asyncio.wait_for(reader, 1.0)
    assert kinds(got)[0] == "submitted"
    assert kinds(got)[-1] == "resolved"
    assert stream.dropped == 0
    assert stream.closed
    assert [e async for e in other] == got  # a second stream saw the same, buffered
    late = client.events()
    assert [e async for e in late] == []  # opened after the close: ends at once


async def test_events_stream_drops_oldest_without_blocking(clock: FakeClock) -> None:
    """A stream nobody reads keeps the newest ``maxsize`` events, counts the dropped ones, and
    never holds up the client."""
    server = FakeApixo(clock)
    seen: list[ev.Event] = []
    async with make_client(clock, server, on_event=seen.append) as client:
        stream = client.events(maxsize=3)
        for prompt in ("a", "b", "c"):
            await run(clock, client, prompt)
        stream.close()
        kept = [e async for e in stream]
    assert len(seen) > 3
    assert kept == seen[-3:]
    assert stream.dropped == len(seen) - 3


async def test_events_stream_maxsize_is_checked() -> None:
    """A maxsize below 1 is a ConfigurationError, before anything runs."""
    client = nb.Client("apixo", api_key="k", transport=ScriptedTransport(lambda r: None))  # type: ignore[arg-type,return-value]
    with pytest.raises(nb.ConfigurationError):
        client.events(maxsize=0)
    with pytest.raises(nb.ConfigurationError):
        nb.Client("apixo", api_key="k", on_event="print")  # type: ignore[arg-type]


async def test_subscribe_and_unsubscribe_internal_listener(clock: FakeClock) -> None:
    """An internal listener (the OpenTelemetry bridge) gets every event until it unsubscribes,
    and with it gone nothing listens any more."""
    server = FakeApixo(clock)
    client = make_client(clock, server)
    emitter = client._events
    assert not emitter.active
    seen: list[ev.Event] = []
    unsubscribe = emitter.subscribe(seen.append)
    assert emitter.active
    async with client:
        await run(clock, client)
        count = len(seen)
        unsubscribe()
        assert not emitter.active
        await run(clock, client, "a dog")
    assert count > 3
    assert len(seen) == count
