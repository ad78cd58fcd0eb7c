"""The client and its scheduler under a fake clock and a scripted transport (no sockets)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web

import nanobanana_async as nb
from nanobanana_async._scheduler._ledger import DEFAULT_HORIZON
from nanobanana_async.testing import FakeClock, ScriptedTransport, json_response, settle
from tests.conftest import walk_exception
from tests.fakeapi import FakeApixo


def make_client(
    clock: FakeClock, server: FakeApixo, key: str = "k", **kwargs: object
) -> tuple[nb.Client, ScriptedTransport]:
    transport = ScriptedTransport(server)
    client = nb.Client(
        "apixo",
        api_key=key,
        transport=transport,
        clock=clock,
        random=lambda: 0.5,
        **kwargs,  # type: ignore[arg-type]
    )
    return client, transport


async def test_generate_polls_until_success(clock: FakeClock) -> None:
    """A task finishing after 12 s resolves with its URLs after a few checks."""
    server = FakeApixo(clock)
    client, _ = make_client(clock, server)
    async with client:
        job = asyncio.ensure_future(client.generate("a cat"))
        await clock.run_until(job.done)
        result = job.result()
    assert result.urls == ("https://img.test/t0.png",)
    assert result.task_id == "t0"
    assert result.model == "nano-banana-2"
    # A first (probe) task is checked at ages growing by half, never further apart than the
    # provider's 3 s advice: seen within one interval of finishing. Probing costs a few checks
    # on the first tasks of a model only (0.6, 0.9, 1.4, 2.1, 3.2, 4.7, 7.1, 10.1, 13.1 s).
    seen = server.tasks["t0"].seen_done_at
    assert seen is not None
    assert 1012.0 <= seen <= 1015.0
    assert server.count("status") <= 9


async def test_failed_task_raises_with_id(clock: FakeClock) -> None:
    """A failed task raises GenerationFailedError carrying the id and the provider code."""
    server = FakeApixo(clock)
    client, _ = make_client(clock, server)
    async with client:
        job = asyncio.ensure_future(client.generate("a cat [[fail]]"))
        await clock.run_until(job.done)
    error = job.exception()
    assert isinstance(error, nb.GenerationFailedError)
    assert (error.task_id, error.code, error.model) == ("t0", "GENERATION_FAILED", "nano-banana-2")


async def test_invalid_input_sends_nothing(clock: FakeClock) -> None:
    """Input the provider would refuse fails before any request is sent."""
    server = FakeApixo(clock)
    client, transport = make_client(clock, server)
    async with client:
        with pytest.raises(nb.InvalidRequestError):
            await client.generate("a cat", model="nano-banana", resolution="4K")
        with pytest.raises(nb.InvalidRequestError):
            await client.generate("", timeout=-1)
    assert transport.requests == []


async def test_unknown_state_keeps_polling_and_logs_once(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An unknown state string is never success; polling goes on and it is logged once."""
    server = FakeApixo(clock, latency=lambda i: 30.0)
    unknown = json_response(
        {"code": 200, "message": "success", "data": {"taskId": "t0", "state": "warming_up_x"}}
    )
    server.hook = lambda r: unknown if r.kind == "status" and clock.now() < 1025 else None
    client, _ = make_client(clock, server)
    with caplog.at_level(logging.WARNING, logger="nanobanana_async"):
        async with client:
            job = asyncio.ensure_future(client.generate("a cat"))
            await clock.run_until(job.done)
    assert job.result().urls
    assert sum("warming_up_x" in r.getMessage() for r in caplog.records) == 1


async def test_poll_429_waits_retry_after_and_pauses_account(clock: FakeClock) -> None:
    """A 429 on a status check delays the next request by its Retry-After, for all tasks."""
    server = FakeApixo(clock)
    limited = json_response(
        {"code": 429, "message": "slow", "data": None}, 429, {"retry-after": "7"}
    )
    fired: list[float] = []

    def hook(request: nb.testing.HttpRequest) -> object:  # type: ignore[name-defined]
        if request.kind == "status" and not fired:
            fired.append(clock.now())
            return limited
        return None

    server.hook = hook  # type: ignore[assignment]
    client, _ = make_client(clock, server)
    async with client:
        job = asyncio.ensure_future(client.generate("a cat"))
        await clock.run_until(lambda: bool(fired))
        late = asyncio.ensure_future(client.generate("another"))
        await clock.run_until(lambda: job.done() and late.done())
    after = [t for t, _ in server.log if t > fired[0]]
    assert min(after) >= fired[0] + 7.0
    assert client.statistics().rate_limited == 1


async def test_submit_timeout_is_outcome_unknown_and_not_retried(clock: FakeClock) -> None:
    """A submit that timed out after sending raises SubmitOutcomeUnknownError, sent once."""
    server = FakeApixo(clock)
    server.hook = lambda r: nb.RequestTimeoutError("read timed out") if r.kind == "submit" else None
    client, _ = make_client(clock, server)
    async with client:
        with pytest.raises(nb.SubmitOutcomeUnknownError) as info:
            await client.generate("a cat")
        # The task may run on the provider: its slot is held until the horizon, then freed.
        assert client.statistics().in_flight == 1
        await clock.advance(DEFAULT_HORIZON)
        assert client.statistics().in_flight == 0
    assert server.count("submit") == 1
    assert info.value.request is not None
    assert info.value.request.prompt == "a cat"


async def test_submit_connect_error_is_retried(clock: FakeClock) -> None:
    """Nothing was sent on a connect error, so the submit is retried and succeeds."""
    server = FakeApixo(clock)
    failures = [nb.ConnectError("refused"), nb.ConnectError("refused")]
    server.hook = lambda r: failures.pop() if r.kind == "submit" and failures else None
    client, _ = make_client(clock, server)
    async with client:
        job = asyncio.ensure_future(client.generate("a cat"))
        await clock.run_until(job.done)
    assert job.result().task_id == "t0"
    assert server.count("submit") == 3
    assert len(server.tasks) == 1


async def test_submit_5xx_is_outcome_unknown(clock: FakeClock) -> None:
    """A 5xx on submit may hide an accepted task: no retry, SubmitOutcomeUnknownError."""
    server = FakeApixo(clock)
    err = json_response({"code": 500, "message": "oops", "data": None}, 500)
    server.hook = lambda r: err if r.kind == "submit" else None
    client, _ = make_client(clock, server)
    async with client:
        with pytest.raises(nb.SubmitOutcomeUnknownError):
            await client.generate("a cat")
    assert server.count("submit") == 1


async def test_submit_429_is_retried_after_hint(clock: FakeClock) -> None:
    """A 429 on submit is an explicit refusal: retried after Retry-After."""
    server = FakeApixo(clock)
    limited = [
        json_response({"code": 429, "message": "x", "data": None}, 429, {"retry-after": "4"})
    ]
    server.hook = lambda r: limited.pop() if r.kind == "submit" and limited else None
    client, _ = make_client(clock, server)
    async with client:
        job = asyncio.ensure_future(client.generate("a cat"))
        await clock.run_until(job.done)
    submits = [t for t, k in server.log if k == "submit"]
    assert len(submits) == 2
    assert submits[1] - submits[0] >= 4.0


async def test_submit_absurd_retry_after_raises(clock: FakeClock) -> None:
    """A Retry-After beyond max_retry_after on a user-blocking submit raises RateLimitError."""
    server = FakeApixo(clock)
    err = json_response({"code": 429, "message": "x", "data": None}, 429, {"retry-after": "99999"})
    server.hook = lambda r: err
    client, _ = make_client(clock, server)
    async with client:
        with pytest.raises(nb.RateLimitError) as info:
            await client.generate("a cat")
    assert info.value.retry_after == 99999.0
    assert server.count("submit") == 1


async def test_cancelled_waiter_detaches_only_itself(clock: FakeClock) -> None:
    """Cancelling one waiter leaves the task tracked; another waiter still gets the result."""
    server = FakeApixo(clock)
    client, _ = make_client(clock, server)
    async with client:
        task = await client.submit(nb.ImageRequest(prompt="a cat"))
        first = asyncio.ensure_future(task.result())
        second = asyncio.ensure_future(task.result())
        await settle()
        first.cancel()
        await clock.run_until(second.done)
    assert first.cancelled()
    assert second.result().task_id == "t0"
    assert task.state is nb.TaskState.SUCCEEDED


async def test_aclose_fails_pending_tasks_with_their_ids(clock: FakeClock) -> None:
    """Closing the client fails pending tasks with ClientClosedError naming each task."""
    server = FakeApixo(clock)
    client, transport = make_client(clock, server)
    async with client:
        task = await client.submit(nb.ImageRequest(prompt="a cat"))
    with pytest.raises(nb.ClientClosedError) as info:
        await task
    assert info.value.task_id == "t0"
    assert transport.closed


async def test_aclose_with_thousands_pending_lets_the_loop_turn(clock: FakeClock) -> None:
    """A client closing with 2,000 tasks pending fails each with its id, a share per loop
    iteration: a web app's other requests keep being served while it closes."""
    server = FakeApixo(clock)
    limits = nb.Limits(requests=100_000, per=1.0, concurrent_tasks=5_000)
    client, _ = make_client(clock, server, limits=limits)
    await client.__aenter__()
    submits = [client.submit(nb.ImageRequest(prompt=f"[[stuck]] {i}")) for i in range(2_000)]
    gathered = asyncio.gather(*submits)
    await clock.run_until(gathered.done)
    tasks = gathered.result()
    seen: list[int] = []  # tasks ended, as other coroutines see it between loop iterations

    async def heartbeat() -> None:
        while True:
            seen.append(sum(t.done() for t in tasks))
            await asyncio.sleep(0)

    beat = asyncio.ensure_future(heartbeat())
    await asyncio.sleep(0)
    await client.aclose()
    beat.cancel()
    assert any(0 < ended < len(tasks) for ended in seen)
    for i, task in enumerate(tasks):
        with pytest.raises(nb.ClientClosedError) as info:
            await task
        assert info.value.task_id == f"t{i}"


async def test_a_closing_clients_checks_are_not_sent(clock: FakeClock) -> None:
    """F30's "nothing sent after close" holds while a close is under way (it fails thousands
    of pending tasks a share per loop iteration): checks that come due meanwhile stay unsent."""
    server = FakeApixo(clock)
    client, transport = make_client(clock, server)
    await client.__aenter__()
    tasks = [await client.submit(nb.ImageRequest(prompt=f"[[stuck]] {i}")) for i in range(20)]
    submitter = client._life.submitter
    assert submitter is not None
    submitter.scheduler.stop_checking(submitter.conn)  # what aclose() does first
    sent = len(transport.requests)
    await clock.advance(100.0)
    assert len(transport.requests) == sent
    await client.aclose()
    assert all(task.done() for task in tasks)


async def test_a_cancelled_aclose_still_fails_every_pending_task(clock: FakeClock) -> None:
    """Ctrl-C twice: the close is cancelled part-way, yet no caller is left waiting and the
    connections are closed."""
    server = FakeApixo(clock)
    limits = nb.Limits(requests=100_000, per=1.0, concurrent_tasks=5_000)
    client, transport = make_client(clock, server, limits=limits)
    await client.__aenter__()
    gathered = asyncio.gather(
        *(client.submit(nb.ImageRequest(prompt=f"[[stuck]] {i}")) for i in range(2_000))
    )
    await clock.run_until(gathered.done)
    closing = asyncio.ensure_future(client.aclose())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert all(task.done() for task in gathered.result())
    assert transport.closed
    assert [t for t in asyncio.all_tasks() if t.get_name() == "nanobanana-scheduler"] == []


async def test_concurrency_cap_applies_backpressure(clock: FakeClock) -> None:
    """Beyond the cap, submits wait for a slot instead of failing; the cap is never exceeded."""
    server = FakeApixo(clock)
    client, _ = make_client(clock, server, limits=nb.Limits(concurrent_tasks=3))
    peak = 0
    async with client:
        jobs = [asyncio.ensure_future(client.generate(f"cat {i}")) for i in range(10)]

        def all_done() -> bool:
            nonlocal peak
            peak = max(peak, client.statistics().in_flight)
            assert client.statistics().in_flight <= 3
            return all(j.done() for j in jobs)

        await clock.run_until(all_done)
    assert [j.result().task_id for j in jobs] == [f"t{i}" for i in range(10)]
    assert peak == 3


async def test_resume_tracks_an_earlier_task(clock: FakeClock) -> None:
    """resume() polls a task id from elsewhere to its result (request is None)."""
    server = FakeApixo(clock)
    server.create(nb.testing.HttpRequest(method="POST", path="/", json={"input": {"prompt": "x"}}))
    client, _ = make_client(clock, server)
    async with client:
        task = client.resume("t0", model="nano-banana-2")
        job = asyncio.ensure_future(task.result())
        await clock.run_until(job.done)
    assert job.result().task_id == "t0"
    assert job.result().request is None
    with pytest.raises(nb.InvalidRequestError):
        client.resume("", model="nope")


@pytest.mark.parametrize(
    ("task_id", "model", "timeout", "path"),
    [
        ("t0", "nano-banana-2", "5", "$.timeout"),
        ("t0", "nano-banana-2", float("nan"), "$.timeout"),
        ("t0", "nano-banana-2", float("inf"), "$.timeout"),
        ("t0", "nano-banana-2", True, "$.timeout"),
        ("t0", "nano-banana-2", 0, "$.timeout"),
        (5, "nano-banana-2", None, "$.task_id"),
        (None, "nano-banana-2", None, "$.task_id"),
        ("t0", ["nano-banana-2"], None, "$.model"),
    ],
)
async def test_resume_refuses_wrong_types_with_a_typed_error(
    clock: FakeClock, task_id: object, model: object, timeout: object, path: str
) -> None:
    """resume() with a timeout of "5" (or NaN, True), a task id that is not a string or an
    unhashable model is InvalidRequestError naming the field, not a bare TypeError, and
    nothing is checked."""
    client, transport = make_client(clock, FakeApixo(clock))
    async with client:
        with pytest.raises(nb.InvalidRequestError) as caught:
            client.resume(task_id, model=model, timeout=timeout)  # type: ignore[arg-type]
        assert [e.split(" @ ")[1] for e in caught.value.errors] == [path]
        assert client.statistics().pending == 0
    assert transport.count("status") == 0


async def test_as_completed_yields_every_task_with_backpressure(clock: FakeClock) -> None:
    """as_completed pulls requests only as slots free and yields each finished task once."""
    server = FakeApixo(clock, latency=lambda i: 5.0 + (i % 4))
    client, _ = make_client(clock, server, limits=nb.Limits(concurrent_tasks=4))
    pulled: list[int] = []

    def source() -> object:
        for i in range(12):
            pulled.append(i)
            yield "" if i == 5 else f"cat {i}"

    seen: list[nb.Task] = []
    async with client:

        async def consume() -> None:
            async for task in client.as_completed(source()):  # type: ignore[arg-type]
                assert len(pulled) - len(seen) <= 4
                seen.append(task)

        job = asyncio.ensure_future(consume())
        await clock.run_until(job.done)
        job.result()
    assert len(seen) == 12
    failed = [t for t in seen if t.id is None]
    assert len(failed) == 1
    with pytest.raises(nb.InvalidRequestError):
        await failed[0]
    assert all(t.state is nb.TaskState.SUCCEEDED for t in seen if t.id is not None)


async def test_as_completed_an_item_of_the_wrong_type_fails_alone(clock: FakeClock) -> None:
    """A None, a number or a malformed pair among the items is a failed task (id None,
    InvalidRequestError naming the type), not a TypeError that ends the whole loop."""
    client, transport = make_client(clock, FakeApixo(clock, latency=lambda i: 5.0))
    items: list[object] = ["a cat", None, 5, ("k", 7), (1, nb.ImageRequest(prompt="x")), "a dog"]
    seen: list[nb.Task] = []
    async with client:

        async def consume() -> None:
            async for task in client.as_completed(items):  # type: ignore[arg-type]
                seen.append(task)

        job = asyncio.ensure_future(consume())
        await clock.run_until(job.done)
        job.result()
    assert len(seen) == 6
    failed = [t for t in seen if t.id is None]
    assert len(failed) == 4
    messages = []
    for task in failed:
        with pytest.raises(nb.InvalidRequestError) as caught:
            await task
        messages.append(str(caught.value))
    assert any("got NoneType @ $" in m for m in messages)
    assert any("got (str, int) @ $" in m for m in messages)
    assert sum(t.state is nb.TaskState.SUCCEEDED for t in seen) == 2
    assert len([r for r in transport.requests if r.method == "POST"]) == 2


async def test_canary_key_never_leaks(canary: str, caplog: pytest.LogCaptureFixture) -> None:
    """Through the real transport, the key is in every request's header and nowhere else:
    not in reprs, any exception in the chain, DEBUG logs, even when the server echoes it."""
    seen_headers: list[str] = []
    release = asyncio.Event()

    async def create(request: web.Request) -> web.Response:
        seen_headers.append(request.headers.get("Authorization", ""))
        prompt = (await request.json())["input"]["prompt"]
        if prompt == "slow":
            await release.wait()
        if prompt == "reset":
            assert request.transport is not None
            request.transport.close()
        # A careless provider quotes the key back in its error.
        echo = f"invalid key: {request.headers['Authorization']}"
        return web.json_response({"code": 401, "message": echo, "data": None}, status=401)

    app = web.Application()
    app.router.add_post("/api/v1/generateTask/{model}", create)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    caught: list[BaseException] = []
    try:
        with caplog.at_level(logging.DEBUG):
            async with nb.Client(
                "apixo",
                api_key=canary,
                base_url=f"http://127.0.0.1:{port}/api/v1",
                timeouts=nb.Timeouts(request=0.2),
            ) as client:
                for prompt in ("echo", "slow", "reset"):
                    with pytest.raises(nb.NanoBananaError) as info:
                        await client.generate(prompt)
                    caught.append(info.value)
                texts = [repr(client), str(client), repr(client.statistics())]
    finally:
        release.set()
        await runner.cleanup()
    assert seen_headers == [f"Bearer {canary}"] * 3
    assert [type(e) for e in caught] == [
        nb.AuthenticationError,
        nb.SubmitOutcomeUnknownError,
        nb.SubmitOutcomeUnknownError,
    ]
    for exc in caught:
        texts += [str(link) for link in walk_exception(exc)]
        texts += [repr(link) for link in walk_exception(exc)]
    records = [r.getMessage() for r in caplog.records]
    assert len(records) >= 3  # the transport's DEBUG line per request, at least
    texts += records
    assert [t for t in texts if canary in t] == []


async def test_learned_latency_moves_waiting_checks_earlier(clock: FakeClock) -> None:
    """Once probes learn tasks take ~1 s, tasks waiting on the 10 s advice are checked early."""
    server = FakeApixo(clock, latency=lambda i: 1.0)
    client, _ = make_client(clock, server)
    async with client:
        jobs = [asyncio.ensure_future(client.generate(f"cat {i}")) for i in range(20)]
        await clock.run_until(lambda: all(j.done() for j in jobs), step=0.05)
        finished = clock.now()
    assert finished < 1003.0
    assert server.count("status") < 20 * 3
