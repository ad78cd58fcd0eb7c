"""Typed events (issue 23 item 1) under a fake clock and a scripted transport: each kind is
emitted where it happens, with the fields a caller maps rows and metrics by."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import logging
import re
from pathlib import Path

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import nanobanana_async as nb
from nanobanana_async import events as ev
from nanobanana_async.testing import FakeClock, ScriptedTransport, json_response, settle
from tests.fakeapi import FakeApixo, LimitedApixo
from tests.unit.test_refusals import Crun


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


async def test_f05_event_refused_will_retry_then_accepted(clock: FakeClock) -> None:
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


async def test_f03_event_outcome_unknown_carries_no_prompt(clock: FakeClock) -> None:
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


async def test_f20_events_carry_no_key_and_no_prompt(canary: str) -> None:
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


# ----------------------------------------------------------------- retries and 429s


async def test_f05_event_retrying_create_after_connect_error(clock: FakeClock) -> None:
    """A create that could not connect is retried: ``retrying`` names the operation, the
    cause, the backoff delay and the attempt that follows, and the resend comes that late."""
    server = FakeApixo(clock)
    failures = [nb.ConnectError("refused")]
    server.hook = lambda r: failures.pop() if r.kind == "submit" and failures else None
    seen: list[ev.Event] = []
    async with make_client(clock, server, on_event=seen.append, key="k") as client:
        await run(clock, client, key="row-1")
    retrying = of(seen, ev.Retrying)
    assert len(retrying) == 1
    retry = retrying[0]
    assert isinstance(retry, ev.Retrying)
    assert (retry.operation, retry.cause, retry.attempt, retry.key) == (
        "create",
        "connect",
        2,
        "row-1",
    )
    assert retry.delay > 0
    resent = of(seen, ev.Submitted)[1]
    assert resent.at == pytest.approx(retry.at + retry.delay)


async def test_f01_event_rate_limited_window_scope(clock: FakeClock) -> None:
    """A create's 429 with Retry-After is ``rate_limited`` (window scope, the hint, create) and
    a ``retrying`` with cause 429 after that hint."""
    server = FakeApixo(clock)
    limited = [
        json_response({"code": 429, "message": "x", "data": None}, 429, {"retry-after": "4"})
    ]
    server.hook = lambda r: limited.pop() if r.kind == "submit" and limited else None
    seen: list[ev.Event] = []
    async with make_client(clock, server, on_event=seen.append) as client:
        await run(clock, client)
    (limit,) = of(seen, ev.RateLimited)
    assert isinstance(limit, ev.RateLimited)
    assert (limit.scope, limit.retry_after, limit.operation) == ("window", 4.0, "create")
    assert limit.task_id is None
    (retry,) = of(seen, ev.Retrying)
    assert isinstance(retry, ev.Retrying)
    assert (retry.cause, retry.delay, retry.operation) == ("429", 4.0, "create")
    refused = of(seen, ev.Refused)[0]
    assert isinstance(refused, ev.Refused)
    assert (refused.status, refused.will_retry) == (429, True)


async def test_f36_event_rate_limited_task_scope_and_limits_lowered(clock: FakeClock) -> None:
    """Told 5 tasks on an account that runs 1, the second create's 429 is about the task cap:
    ``rate_limited`` says scope ``tasks`` and ``limits_lowered`` the learned cap of 1."""
    server = LimitedApixo(clock, requests=1000, per=10, cap=1, latency=lambda i: 5.0)
    seen: list[ev.Event] = []
    limits = nb.Limits(requests=1000, per=10, concurrent_tasks=5)
    async with make_client(clock, server, on_event=seen.append, limits=limits) as client:
        jobs = [asyncio.ensure_future(client.generate(f"p{i}")) for i in range(2)]
        await clock.run_until(lambda: all(j.done() for j in jobs))
    assert all(j.result().urls for j in jobs)
    scopes = [e.scope for e in of(seen, ev.RateLimited)]  # type: ignore[attr-defined]
    assert scopes
    assert scopes[0] == "tasks"
    lowered = of(seen, ev.LimitsLowered)
    assert len(lowered) == 1
    low = lowered[0]
    assert isinstance(low, ev.LimitsLowered)
    assert (low.concurrent_tasks, low.reason) == (1, "tasks")


async def test_f49_event_limits_lowered_then_recovered(clock: FakeClock) -> None:
    """Status 429s without a hint cut the window once (``limits_lowered``, reason window); after
    three quiet windows the next request raises it again (``limits_recovered``)."""
    server = FakeApixo(clock, latency=lambda i: 3.0)
    refused = [10]
    too_many = json_response({"code": 429, "message": "x", "data": None}, 429)

    def hook(request: nb.testing.HttpRequest) -> object:  # type: ignore[name-defined]
        if request.kind == "status" and refused[0] > 0:
            refused[0] -= 1
            return too_many
        return None

    server.hook = hook  # type: ignore[assignment]
    seen: list[ev.Event] = []
    limits = nb.Limits(requests=600, per=10, concurrent_tasks=50)
    async with make_client(clock, server, on_event=seen.append, limits=limits) as client:
        jobs = [asyncio.ensure_future(client.generate(f"cat {i}")) for i in range(10)]
        await clock.run_until(lambda: all(j.done() for j in jobs), step=0.1)
        await clock.advance(40.0)
        await run(clock, client, "later")
    lowered = of(seen, ev.LimitsLowered)
    assert len(lowered) == 1
    assert lowered[0].reason == "window"  # type: ignore[attr-defined]
    assert lowered[0].requests < 600  # type: ignore[attr-defined]
    limited = of(seen, ev.RateLimited)
    assert len(limited) == 10
    assert {e.operation for e in limited} == {"status"}  # type: ignore[attr-defined]
    assert {e.kind for e in of(seen, ev.Retrying)} == {"retrying"}
    assert {e.cause for e in of(seen, ev.Retrying)} == {"429"}  # type: ignore[attr-defined]
    recovered = of(seen, ev.LimitsRecovered)
    assert recovered
    assert recovered[0].at > lowered[0].at
    assert recovered[-1].requests > lowered[0].requests  # type: ignore[attr-defined]


async def test_f02_event_retrying_status_after_503(clock: FakeClock) -> None:
    """A status check answered 503 is retried: ``retrying`` (status, cause 503) carries the
    task's id, and reaches the task's ``on_update``."""
    server = FakeApixo(clock)
    down = json_response({"code": 503, "message": "busy", "data": None}, 503)
    failed = [down]
    server.hook = lambda r: failed.pop() if r.kind == "status" and failed else None
    seen: list[ev.Event] = []
    updates: list[ev.Event] = []
    async with make_client(clock, server, on_event=seen.append) as client:
        task = await client.submit(nb.ImageRequest(prompt="a cat"))
        task.on_update(updates.append)
        await clock.run_until(task.done)
    (retry,) = of(seen, ev.Retrying)
    assert isinstance(retry, ev.Retrying)
    assert (retry.operation, retry.cause, retry.task_id) == ("status", "503", "t0")
    assert retry in updates


async def test_f23_event_waiting_and_slot_granted(clock: FakeClock) -> None:
    """A create beyond the cap emits ``waiting`` (running of cap), then ``slot_granted`` with
    the seconds it waited, once the first task ends."""
    server = FakeApixo(clock, latency=lambda i: 12.0)
    seen: list[ev.Event] = []
    limits = nb.Limits(requests=100, per=10, concurrent_tasks=1)
    async with make_client(clock, server, on_event=seen.append, limits=limits) as client:
        jobs = [asyncio.ensure_future(client.generate(f"p{i}")) for i in range(2)]
        await clock.run_until(lambda: all(j.done() for j in jobs))
    (waiting,) = of(seen, ev.WaitingForSlot)
    (granted,) = of(seen, ev.SlotGranted)
    assert isinstance(waiting, ev.WaitingForSlot)
    assert isinstance(granted, ev.SlotGranted)
    assert (waiting.running, waiting.cap) == (1, 1)
    first_end = of(seen, ev.Resolved)[0].at
    assert granted.at == pytest.approx(first_end)
    assert granted.waited == pytest.approx(granted.at - waiting.at)
    assert granted.waited >= 12.0


# ----------------------------------------------------------------- per task and per account


async def test_task_on_update_gets_only_its_own_events(clock: FakeClock) -> None:
    """``Task.on_update`` hears its own task's checks and end (not another task's), with no
    client listener; a raising second callback changes nothing for the first."""
    server = FakeApixo(clock, latency=lambda i: (5.0, 9.0)[i])
    async with make_client(clock, server) as client:
        first = await client.submit(nb.ImageRequest(prompt="a"))
        second = await client.submit(nb.ImageRequest(prompt="b"))
        mine: list[ev.Event] = []
        first.on_update(mine.append)
        first.on_update(lambda e: 1 / 0)
        assert client._events.active
        await clock.run_until(lambda: first.done() and second.done())
        assert not client._events.active  # its task ended: nothing listens any more
    assert {e.task_id for e in mine} == {"t0"}
    assert kinds(mine)[-1] == "resolved"
    assert set(kinds(mine)[:-1]) == {"checked"}
    assert len(of(mine, ev.Checked)) == server.tasks["t0"].checks


async def test_account_events_reach_every_client_of_the_account(clock: FakeClock) -> None:
    """Two clients of one account: a 429 on one's check reaches both as ``rate_limited``;
    each hears only its own tasks' events."""
    server = FakeApixo(clock)
    limited = [
        json_response({"code": 429, "message": "x", "data": None}, 429, {"retry-after": "3"})
    ]
    server.hook = lambda r: limited.pop() if r.kind == "status" and limited else None
    one: list[ev.Event] = []
    two: list[ev.Event] = []
    async with (
        make_client(clock, server, on_event=one.append) as a,
        make_client(clock, server, on_event=two.append) as b,
    ):
        await run(clock, a, "a cat")
    assert a.statistics().rate_limited == 1
    assert [e.kind for e in one if e.kind == "rate_limited"] == ["rate_limited"]
    # The 429 also cut the account's window: both hear that too, and nothing of a's task.
    assert kinds(two) == ["limits_lowered", "rate_limited"]
    assert [e.kind for e in one if e.kind in ("limits_lowered", "rate_limited")] == kinds(two)
    assert all(e.task_id is None for e in two)
    assert b is not a


# ----------------------------------------------------------------- through a Router


def router_pair(
    clock: FakeClock, first: FakeApixo, second: FakeApixo, key: str = "key-a"
) -> tuple[nb.Client, nb.Client]:
    a = make_client(clock, first, key=key)
    b = make_client(clock, second, key="key-b", base_url="https://b.test")
    return a, b


async def test_f40_router_event_account_chosen_and_failover(clock: FakeClock) -> None:
    """A create refused for want of a connection on the first account is chosen, refused, failed
    over to the second and accepted there; every event names its account, and a client's own
    listener sees its events with the account too."""
    sa, sb = FakeApixo(clock), FakeApixo(clock)
    sa.hook = lambda r: nb.ConnectError("refused") if r.kind == "submit" else None
    a, b = router_pair(clock, sa, sb)
    own: list[ev.Event] = []
    a._events.subscribe(own.append)
    seen: list[ev.Event] = []
    async with nb.Router(
        [a, b], strategy="priority", owns_clients=True, on_event=seen.append
    ) as router:
        first, second = router.accounts
        job = asyncio.ensure_future(router.generate("a cat"))
        await clock.run_until(job.done)
    assert job.result().urls
    head = [(e.kind, e.account) for e in seen if e.kind != "checked"]
    assert head == [
        ("account_chosen", first),
        ("submitted", first),
        ("refused", first),
        ("failover", first),
        ("account_chosen", second),
        ("submitted", second),
        ("accepted", second),
        ("resolved", second),
    ]
    failover = of(seen, ev.FailedOver)[0]
    assert isinstance(failover, ev.FailedOver)
    assert (failover.to_account, failover.reason) == (second, "ConnectError")
    chosen = of(seen, ev.AccountChosen)[0]
    assert chosen.strategy == "priority"  # type: ignore[attr-defined]
    assert of(seen, ev.Refused)[0].will_retry is False  # type: ignore[attr-defined]
    assert {e.account for e in own} == {first}
    assert {e.kind for e in own} == {"submitted", "refused"}


async def test_f43_router_event_failover_to_no_account_left(clock: FakeClock) -> None:
    """When the last account refuses too, the failover names no account to go to."""
    sa, sb = FakeApixo(clock), FakeApixo(clock)
    denied = json_response({"code": 401, "message": "no", "data": None}, 401)
    sa.hook = sb.hook = lambda r: denied if r.kind == "submit" else None
    a, b = router_pair(clock, sa, sb)
    seen: list[ev.Event] = []
    async with nb.Router(
        [a, b], strategy="priority", owns_clients=True, on_event=seen.append
    ) as router:
        with pytest.raises(nb.AuthenticationError):
            await router.generate("a cat")
        names = router.accounts
    moves = [(e.account, e.to_account, e.reason) for e in of(seen, ev.FailedOver)]  # type: ignore[attr-defined]
    assert moves == [
        (names[0], names[1], "AuthenticationError"),
        (names[1], None, "AuthenticationError"),
    ]


async def test_f41_router_event_circuit_opens_half_opens_and_closes(clock: FakeClock) -> None:
    """Five maintenance refusals in a row open each account's circuit (``circuit`` open); once
    the provider is back, the probe half-opens it and its success closes it."""

    class Maintenance(Crun):
        down = True

        def __call__(self, request: nb.testing.HttpRequest) -> nb.testing.HttpResponse:  # type: ignore[name-defined]
            if request.kind == "submit" and self.down:
                return json_response({"code": 455, "message": "maintenance", "data": None})
            return super().__call__(request)

    one, two = Maintenance(), Maintenance()
    a = nb.Client(
        "crun", api_key="key-c", transport=ScriptedTransport(one), clock=clock, random=lambda: 0.5
    )
    b = nb.Client(
        "crun", api_key="key-d", transport=ScriptedTransport(two), clock=clock, random=lambda: 0.5
    )
    seen: list[ev.Event] = []
    async with nb.Router(
        [a, b], owns_clients=True, random=lambda: 0.5, on_event=seen.append
    ) as router:
        for i in range(5):
            job = asyncio.ensure_future(router.generate(f"p{i}"))
            await clock.run_until(job.done, limit=7200)
            assert isinstance(job.exception(), nb.ProviderRefusedError)
        opened = [(e.account, e.state) for e in of(seen, ev.CircuitChanged)]  # type: ignore[attr-defined]
        assert sorted(opened) == sorted((name, "open") for name in router.accounts)
        one.down = two.down = False
        job = asyncio.ensure_future(router.generate("back"))
        await clock.run_until(job.done, limit=7200)
        assert job.result().urls
    moves = [e.state for e in of(seen, ev.CircuitChanged)]  # type: ignore[attr-defined]
    assert moves[2:] == ["half_open", "closed"]


async def test_f44_router_event_hedge(clock: FakeClock) -> None:
    """A task past its account's learned p99 gets a hedge on the other account: ``hedge`` names
    that account, after its ``account_chosen``."""
    slow = {3: 100.0}
    sa = FakeApixo(clock, latency=lambda i: slow.get(i, 5.0))
    sb = FakeApixo(clock)
    a, b = router_pair(clock, sa, sb)
    seen: list[ev.Event] = []
    hedge = nb.Hedge(after_quantile=0.99, max_share=0.5)
    async with nb.Router(
        [a, b], strategy="priority", hedge=hedge, owns_clients=True, on_event=seen.append
    ) as router:
        for i in range(3):
            job = asyncio.ensure_future(router.generate(f"learn {i}"))
            await clock.run_until(job.done)
        assert of(seen, ev.HedgeSent) == []
        task = await router.submit(nb.ImageRequest(prompt="slow"), key="row-9")
        updates: list[ev.Event] = []
        task.on_update(updates.append)
        job = asyncio.ensure_future(task.result())
        await clock.run_until(job.done)
        names = router.accounts
    (hedged,) = of(seen, ev.HedgeSent)
    assert (hedged.account, hedged.key) == (names[1], "row-9")
    before = seen[seen.index(hedged) - 1]
    assert (before.kind, before.account) == ("account_chosen", names[1])
    assert job.result().task_id == "t0"  # the hedge's task, on the second account
    # The router's task hears the tasks it follows: the slow one's checks, the hedge's end.
    assert {(e.account, e.task_id) for e in of(updates, ev.Checked)} >= {(names[0], "t3")}
    assert (names[1], "t0") in {(e.account, e.task_id) for e in of(updates, ev.Resolved)}


async def test_router_events_stream_ends_on_close_and_carries_no_key(
    clock: FakeClock, canary: str
) -> None:
    """``router.events()`` yields the router's and its clients' events, each with its account,
    none holding a key, and ends when the router closes."""
    sa, sb = FakeApixo(clock), FakeApixo(clock)
    a, b = router_pair(clock, sa, sb, key=canary)
    async with nb.Router([a, b], owns_clients=True) as router:
        stream = router.events()
        job = asyncio.ensure_future(router.generate("a cat"))
        await clock.run_until(job.done)
    got = [e async for e in stream]
    assert kinds(got)[0] == "account_chosen"
    assert "resolved" in kinds(got)
    assert all(e.account in router.accounts for e in got)
    assert not any(canary in repr(e) for e in got)
    assert stream.dropped == 0


async def test_event_downloaded_after_a_retry(tmp_path: Path, canary: str) -> None:
    """An image host answering 503 once: the download emits ``retrying`` (download, 503), then
    ``downloaded`` with the path written and its size in bytes."""
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 1000
    answers = [web.Response(status=503)]

    async def image(_: web.Request) -> web.Response:
        return answers.pop() if answers else web.Response(body=png, content_type="image/png")

    app = web.Application()
    app.router.add_get("/a.png", image)
    seen: list[ev.Event] = []
    async with TestServer(app, host="127.0.0.1", port=0) as server:
        url = str(server.make_url("/a.png"))
        result = nb.ImageResult(
            task_id="t9",
            provider="apixo",
            model="nano-banana-2",
            urls=(url,),
            request=None,
            submitted_at=dt.datetime.now(dt.UTC),
            completed_at=dt.datetime.now(dt.UTC),
        )
        retry = nb.RetryPolicy(base_delay=0.01, max_delay=0.01)
        async with nb.Client("apixo", api_key=canary, retry=retry, on_event=seen.append) as client:
            (path,) = await client.download(result, tmp_path / "cat")
    assert kinds(seen) == ["retrying", "downloaded"]
    retrying, downloaded = seen
    assert isinstance(retrying, ev.Retrying)
    assert (retrying.operation, retrying.cause, retrying.attempt) == ("download", "503", 2)
    assert isinstance(downloaded, ev.Downloaded)
    assert (downloaded.task_id, downloaded.url, downloaded.path) == ("t9", url, str(path))
    assert downloaded.size == len(png) == path.stat().st_size


# ----------------------------------------------------------------- the README's table

README = Path(__file__).resolve().parents[2] / "README.md"
TABLE = re.compile(r"<!-- events:begin -->\n(.*?)<!-- events:end -->", re.S)
ROW = re.compile(r"^\| `(?P<kind>\w+)` \| `(?P<cls>\w+)` \| (?P<fields>.*) \|$")


def test_readme_events_table_lists_every_kind_class_and_field() -> None:
    """README's one events table has a row per event class in ``nanobanana_async.events``
    (its kind and class), naming exactly the fields the class adds to ``Event``."""
    block = TABLE.search(README.read_text(encoding="utf-8"))
    assert block is not None, "README.md lost its <!-- events:begin/end --> block"
    rows = {}
    for line in block.group(1).splitlines()[2:]:
        match = ROW.match(line)
        assert match is not None, f"unreadable row: {line!r}"
        # Field names are the backquoted words outside parentheses (those say what they hold).
        named = re.sub(r"\([^)]*\)", "", match["fields"])
        rows[match["cls"]] = (match["kind"], set(re.findall(r"`(\w+)`", named)))
    common = {f.name for f in attrs.fields(ev.Event)}
    classes = {
        name: cls
        for name, cls in vars(ev).items()
        if isinstance(cls, type) and issubclass(cls, ev.Event) and cls is not ev.Event
    }
    assert set(rows) == set(classes)
    for name, cls in classes.items():
        fields = {f.name for f in attrs.fields(cls)} - common
        assert rows[name] == (cls.kind, fields), name
    assert len({kind for kind, _ in rows.values()}) == len(rows)
    assert set(classes) == {c.__name__ for c in ev.AnyEvent.__args__}  # type: ignore[attr-defined]
    assert set(ev.__all__) == {*classes, "Event", "EventStream", "AnyEvent"}


def test_resolved_result_is_the_result_without_its_request() -> None:
    """The result a ``resolved`` event carries equals the task's result in every field but the
    request (so a field added to ImageResult is not lost on the event)."""
    now = dt.datetime.now(dt.UTC)
    values: dict[str, object] = {
        "task_id": "t1",
        "provider": "apixo",
        "model": "nano-banana-2",
        "urls": ("https://img.test/a.png",),
        "request": nb.ImageRequest(prompt="a private prompt"),
        "submitted_at": now,
        "completed_at": now + dt.timedelta(seconds=3),
        "attempts": (nb.Attempt(account="apixo:1234", outcome="accepted"),),
    }
    assert set(values) == {f.name for f in attrs.fields(nb.ImageResult)}
    result = nb.ImageResult(**values)  # type: ignore[arg-type]
    copied = ev._result_without_prompt(result)
    assert copied == attrs.evolve(result, request=None)
    assert "private" not in repr(copied)


async def test_f01_event_rate_limited_unknown_scope_past_patience(clock: FakeClock) -> None:
    """A create's 429 whose Retry-After is past ``max_retry_after`` is raised, not learned from:
    ``rate_limited`` says scope ``unknown`` (with the hint) and the refusal is final."""
    server = FakeApixo(clock)
    err = json_response({"code": 429, "message": "x", "data": None}, 429, {"retry-after": "99999"})
    server.hook = lambda r: err
    seen: list[ev.Event] = []
    async with make_client(clock, server, on_event=seen.append) as client:
        with pytest.raises(nb.RateLimitError):
            await client.generate("a cat")
    assert kinds(seen) == ["submitted", "refused", "rate_limited"]
    limited = seen[2]
    assert isinstance(limited, ev.RateLimited)
    assert (limited.scope, limited.retry_after, limited.operation) == ("unknown", 99999.0, "create")
    assert of(seen, ev.Refused)[0].will_retry is False  # type: ignore[attr-defined]


async def test_async_event_callbacks_are_refused_before_anything_runs(clock: FakeClock) -> None:
    """An ``async def`` callback would never run (it is called, not awaited, on the loop): the
    client, the router and ``Task.on_update`` refuse it at once with a ConfigurationError."""

    async def coro(event: ev.Event) -> None:
        del event

    class AsyncCall:
        async def __call__(self, event: ev.Event) -> None:
            del event

    server = FakeApixo(clock)
    for callback in (coro, AsyncCall()):
        with pytest.raises(nb.ConfigurationError, match="events\\(\\)"):
            make_client(clock, server, on_event=callback)
    async with make_client(clock, server) as client:
        with pytest.raises(nb.ConfigurationError, match="events\\(\\)"):
            nb.Router([client], on_event=coro)
        task = await client.submit(nb.ImageRequest(prompt="a"))
        with pytest.raises(nb.ConfigurationError, match="events\\(\\)"):
            task.on_update(coro)
        await clock.run_until(task.done)
    assert (await task).urls


async def test_on_event_returning_a_coroutine_is_closed_and_warned_once(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A plain callback that returns a coroutine (``lambda e: queue.put(e)``) has it closed, not
    left un-awaited (no RuntimeWarning), with one warning that says to use ``events()``; the
    task still ends, and so does one whose ``on_update`` does the same (a callback of its own,
    warned about once too)."""
    queue: asyncio.Queue[ev.Event] = asyncio.Queue()
    server = FakeApixo(clock)
    with caplog.at_level(logging.WARNING, logger="nanobanana_async"):
        async with make_client(clock, server, on_event=lambda e: queue.put(e)) as client:
            done = await run(clock, client)
            task = await client.submit(nb.ImageRequest(prompt="b"))
            task.on_update(lambda e: queue.put(e))
            await clock.run_until(task.done)
    gc.collect()  # an un-awaited coroutine warns (an error here) when collected
    assert done.result().urls  # type: ignore[attr-defined]
    assert (await task).urls
    assert queue.empty()
    warnings = [r.getMessage() for r in caplog.records if "event callback" in r.getMessage()]
    assert len(warnings) == 2
    assert all("coroutine" in w and "events()" in w for w in warnings)


async def test_a_router_refused_for_bad_telemetry_leaves_its_clients_as_they_were(
    clock: FakeClock,
) -> None:
    """A Router refused over its ``telemetry=`` raises before it touches its clients: its
    ``on_event`` hears nothing of them afterwards, and the clients' own events do not name an
    account of that dead router."""
    server = FakeApixo(clock)
    dead: list[ev.Event] = []
    own: list[ev.Event] = []
    async with make_client(clock, server, on_event=own.append) as client:
        with pytest.raises(nb.ConfigurationError):
            nb.Router([client], on_event=dead.append, telemetry="otel")  # type: ignore[arg-type]
        await run(clock, client)
    assert own
    assert dead == []
    assert {e.account for e in own} == {None}


async def test_f44_router_task_on_update_hears_nothing_after_its_result(
    clock: FakeClock,
) -> None:
    """A hedged router task's ``on_update`` hears one ``resolved`` (the winner's): the losing
    task, followed to its end on the provider, sends its later checks and its own end to
    nobody's ``on_update`` (a second ``resolved`` would mark the row done twice)."""
    slow = {3: 100.0}
    sa = FakeApixo(clock, latency=lambda i: slow.get(i, 5.0))
    sb = FakeApixo(clock)
    a, b = router_pair(clock, sa, sb)
    hedge = nb.Hedge(after_quantile=0.99, max_share=0.5)
    async with nb.Router([a, b], strategy="priority", hedge=hedge, owns_clients=True) as router:
        for i in range(3):
            job = asyncio.ensure_future(router.generate(f"learn {i}"))
            await clock.run_until(job.done)
        task = await router.submit(nb.ImageRequest(prompt="slow"), key="row-9")
        updates: list[ev.Event] = []
        task.on_update(updates.append)
        job = asyncio.ensure_future(task.result())
        await clock.run_until(job.done)
        heard = len(updates)
        await clock.run_until(lambda: router.statistics().hedge_losers_ended == 1, limit=600)
    assert job.result().task_id == "t0"
    assert [e.task_id for e in of(updates, ev.Resolved)] == ["t0"]
    assert len(updates) == heard


# ----------------------------------------------------------------- readers and failures


async def test_events_each_reader_its_own_stream_and_a_second_reader_of_one_is_refused(
    clock: FakeClock,
) -> None:
    """Each ``events()`` call is its own stream with every event, so two readers each get the
    whole task's life; a second reader of one stream, while its first waits, is told so with a
    ConfigurationError (it used to wait for ever, the first reader getting every event)."""
    server = FakeApixo(clock)

    async def consume(stream: ev.EventStream) -> list[ev.Event]:
        return [event async for event in stream]

    async with make_client(clock, server) as client:
        first, second = client.events(), client.events()
        readers = [asyncio.ensure_future(consume(s)) for s in (first, second)]
        await settle()
        with pytest.raises(nb.ConfigurationError, match="already has a reader"):
            await asyncio.wait_for(first.__anext__(), 1.0)
        await run(clock, client)
    one, two = [await asyncio.wait_for(r, 1.0) for r in readers]
    assert kinds(one)[0] == "submitted"
    assert kinds(one)[-1] == "resolved"
    assert one == two


async def test_a_failing_listener_does_not_hide_another_listeners_failure(
    clock: FakeClock, caplog: pytest.LogCaptureFixture, canary: str
) -> None:
    """Failures are said once per callback: after an internal listener (the OpenTelemetry
    bridge) has failed, a user's ``on_event`` failing is still logged, once, masked; a task
    ``on_update`` made anew for each task (one lambda) is one callback, logged once."""

    class Bridge:
        def __call__(self, event: ev.Event) -> None:
            raise RuntimeError("bridge broke")

    def mine(event: ev.Event) -> None:
        if event.kind == "resolved":
            raise ValueError(f"user broke {canary}")

    server = FakeApixo(clock)
    with caplog.at_level(logging.WARNING, logger="nanobanana_async"):
        async with make_client(clock, server, key=canary) as client:
            client._events.subscribe(Bridge())
            client._events.subscribe(mine)
            await run(clock, client)
            for prompt in ("a", "b"):
                task = await client.submit(nb.ImageRequest(prompt=prompt))
                task.on_update(lambda e: 1 / 0)
                await clock.run_until(task.done)
    warnings = [r.getMessage() for r in caplog.records if "event callback" in r.getMessage()]
    assert len(warnings) == 3
    assert sum("bridge broke" in w for w in warnings) == 1
    assert sum("user broke" in w for w in warnings) == 1
    assert sum("ZeroDivisionError" in w for w in warnings) == 1
    assert not any(canary in w for w in warnings)


async def test_on_update_on_a_reattached_ended_task_hears_its_resolved(
    clock: FakeClock, tmp_path: Path
) -> None:
    """A task re-attached from a journal that recorded its end (a rerun) is done at once;
    ``on_update`` on it still hears one ``resolved``, soon, with its task id, key and result
    (checks 0: none was sent here), as does one on a task awaited before, which gets the event
    emitted at its end."""
    server = FakeApixo(clock)
    journal = tmp_path / "j.db"
    heard: list[ev.Event] = []
    async with make_client(clock, server, journal=journal) as client:
        first = await run(clock, client, "a cat", key="row-1")
        awaited = await client.submit(nb.ImageRequest(prompt="a dog"), key="row-2")
        awaited.on_update(heard.append)
        await clock.run_until(awaited.done)
    assert kinds(heard)[-1] == "resolved"
    live_end = heard[-1]
    async with make_client(clock, server, journal=journal) as client:
        again = await client.submit(nb.ImageRequest(prompt="a cat"), key="row-1")
        assert again.done()
        late: list[ev.Event] = []
        again.on_update(late.append)
        assert late == []  # soon, not inside on_update
        await settle()
        assert len(late) == 1
        end = late[0]
        assert isinstance(end, ev.Resolved)
        assert (end.task_id, end.key, end.error, end.checks) == ("t0", "row-1", None, 0)
        assert end.result is not None
        assert end.result.urls == first.result().urls  # type: ignore[attr-defined]
        assert end.result.request is None  # events carry no prompt
        assert end.latency >= 0.0
        after: list[ev.Event] = []
        awaited.on_update(after.append)
        await settle()
        assert after == [live_end]
    assert server.count("submit") == 2  # the rerun paid for nothing
