"""The callback receiver's lifetime (start, close, start again) and its clients' clocks.

Receivers serve on 127.0.0.1; clients poll a scripted apixo on fake clocks.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

import aiohttp
import pytest

import nanobanana_async as nb
from nanobanana_async.testing import (
    FakeClock,
    HttpRequest,
    HttpResponse,
    ScriptedTransport,
    settle,
)
from tests.fakeapi import FakeApixo


def _status_body(task_id: str) -> dict[str, object]:
    result = json.dumps({"resultUrls": [f"https://img.test/{task_id}.png"]})
    return {"code": 200, "data": {"taskId": task_id, "state": "success", "resultJson": result}}


def _client(server: FakeApixo, receiver: nb.CallbackReceiver, clock: FakeClock | None) -> nb.Client:
    """An apixo client of ``server`` on ``clock`` (None: the real clock)."""
    transport = ScriptedTransport(server)
    return nb.Client("apixo", api_key="k", transport=transport, clock=clock, callbacks=receiver)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _post(url: str, body: object) -> int:
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as resp:
        return resp.status


async def test_a_closed_receiver_starts_again_and_still_knows_its_running_tasks(
    clock: FakeClock,
) -> None:
    """start() after aclose() serves again (at the same URL on the same port), and a callback
    for a task submitted before the close still makes its check due; the check resolves it."""
    server = FakeApixo(clock, latency=lambda i: 12.0)
    urls = server.callback_urls
    port = _free_port()
    receiver = nb.CallbackReceiver()
    await receiver.start("127.0.0.1", port)
    first_url = receiver.public_url
    async with _client(server, receiver, clock) as client:
        task = await client.submit(nb.ImageRequest(prompt="a cat"))
        await receiver.aclose()
        await receiver.aclose()  # closing twice is harmless
        await receiver.start("127.0.0.1", port)
        try:
            assert receiver.public_url == first_url
            await clock.advance(12.5)  # the task ended; the safety-net check is later
            checks = server.tasks["t0"].checks
            assert await _post(urls[0], _status_body("t0")) == 200
            await clock.advance(0.1)
            assert task.done()
            assert server.tasks["t0"].checks == checks + 1
            assert (await task).urls == ("https://img.test/t0.png",)
        finally:
            await receiver.aclose()
    assert receiver.statistics().accepted == 1


async def test_async_with_starts_a_closed_receiver_again_at_its_new_port(
    clock: FakeClock,
) -> None:
    """A receiver whose URL start() chose gets a fresh one when started again on port 0 (the
    old port may be anyone's now), and ``async with`` starts a closed receiver again."""
    server = FakeApixo(clock, latency=lambda i: 12.0)
    urls = server.callback_urls
    receiver = nb.CallbackReceiver()
    await receiver.start()
    old_url = receiver.public_url
    assert old_url is not None
    await receiver.aclose()
    # Hold the old port (bound, not listening) so the new start cannot land on it by chance.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(old_url.split(":")[2].split("/")[0])))
        async with receiver, _client(server, receiver, clock) as client:
            assert receiver.public_url != old_url
            task = await client.submit(nb.ImageRequest(prompt="a cat"))
            assert urls[0].startswith(f"{receiver.public_url}/")
            await clock.advance(12.5)
            assert await _post(urls[0], _status_body("t0")) == 200
            await clock.advance(0.1)
            assert task.done()
    assert receiver.statistics().accepted == 1


async def test_start_twice_is_refused_and_the_receiver_keeps_serving() -> None:
    """A second start() without aclose() raises ConfigurationError and changes nothing: the
    first server still answers at the same URL."""
    receiver = nb.CallbackReceiver()
    await receiver.start()
    url = receiver.public_url
    try:
        with pytest.raises(nb.ConfigurationError, match="already started"):
            await receiver.start()
        with pytest.raises(nb.ConfigurationError, match="already started"):
            await receiver.start("127.0.0.1", 0, public_url="http://127.0.0.1:1/elsewhere")
        assert receiver.public_url == url
        assert await _post(f"{url}/not-a-token", {}) == 401
    finally:
        await receiver.aclose()


async def test_a_start_that_cannot_listen_leaves_the_receiver_startable() -> None:
    """A port in use fails start() with OSError; the receiver is not half started, so the
    next start() on a free port serves."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        receiver = nb.CallbackReceiver()
        with pytest.raises(OSError, match="in use"):
            await receiver.start("127.0.0.1", int(taken.getsockname()[1]))
    await receiver.start()
    try:
        assert await _post(f"{receiver.public_url}/not-a-token", {}) == 401
    finally:
        await receiver.aclose()


@pytest.mark.parametrize("real_clock", [False, True], ids=["two-fake-clocks", "real-and-fake"])
async def test_one_receiver_serves_clients_on_different_clocks(real_clock: bool) -> None:
    """Each registration ages on the clock of the client that made it: a client whose clock
    reads far ahead does not expire another's fresh token, so a callback that beats that
    client's submit answer is still held and applied (F16 across two clocks)."""
    behind = None if real_clock else FakeClock(1000.0)
    ahead = FakeClock(time.monotonic() + 100_000.0)
    # The provider's tasks end at once (latency 0) on its own clock, whatever the client's.
    slow, other = FakeApixo(behind or FakeClock(), latency=lambda i: 0.0), FakeApixo(ahead)
    gate = asyncio.Event()
    urls: list[str] = []

    async def gated_create(request: HttpRequest) -> HttpResponse:
        assert isinstance(request.json, dict)
        urls.append(request.json["callback_url"])
        await gate.wait()
        return slow.create(request)

    slow.hook = lambda r: gated_create(r) if r.kind == "submit" else None  # type: ignore[assignment,return-value]
    async with (
        nb.CallbackReceiver() as receiver,
        _client(slow, receiver, behind) as late,
        _client(other, receiver, ahead) as prompt,
    ):
        pending = asyncio.ensure_future(late.submit(nb.ImageRequest(prompt="a cat")))
        await settle()
        assert len(urls) == 1
        await prompt.submit(nb.ImageRequest(prompt="a dog"))  # registers 100,000 s ahead
        assert await _post(urls[0], _status_body("t0")) == 200
        assert receiver.statistics().early == 1
        gate.set()
        task = await pending
        if behind is not None:
            await behind.advance(0.1)
        else:  # the check the callback asked for comes at once, not after the late first check
            await asyncio.wait_for(task, 2.0)
        assert task.done()
        assert slow.tasks["t0"].checks == 1


async def test_a_close_while_starting_leaves_nothing_listening() -> None:
    """aclose() while start() is still setting up waits for it and then closes: the port is
    not left listening with nothing to close it, and the receiver can be started again."""
    port = _free_port()
    receiver = nb.CallbackReceiver()
    starting = asyncio.ensure_future(receiver.start("127.0.0.1", port))
    await asyncio.sleep(0)
    await receiver.aclose()
    await starting
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    await receiver.start("127.0.0.1", port)
    await receiver.aclose()


def test_a_receiver_serves_one_event_loop_after_another() -> None:
    """A receiver kept across event loops (a second asyncio.run, a test's own loop) starts
    and closes in each, also when a close races a start."""
    receiver = nb.CallbackReceiver()

    async def race() -> None:
        await asyncio.gather(receiver.start(), receiver.aclose())
        await receiver.aclose()

    asyncio.run(race())
    asyncio.run(race())
