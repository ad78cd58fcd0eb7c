"""Fault-matrix rows owned by the library's edges: bodies that arrive in pieces (F31) and
peers that never finish sending (F38)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web

import nanobanana_async as nb
from nanobanana_async.testing import FakeClock, Latency, Simulator, settle
from tests.chaos import test_fault_matrix_callbacks as callbacks
from tests.chaos.test_fault_matrix_callbacks import Rig, rigged

rig = callbacks.rig  # the same 127.0.0.1 receiver rig as F12-F17


async def slowly(data: bytes, pieces: int) -> AsyncIterator[bytes]:
    step = -(-len(data) // pieces)
    for i in range(0, len(data), step):
        yield data[i : i + step]
        await asyncio.sleep(0.05)  # separate TCP writes, 50 ms apart


async def test_f31_callback_in_several_writes_is_accepted(rig: Rig) -> None:
    """F31: a valid callback sent chunked in 4 writes 50 ms apart is read whole."""
    task = await rig.client.submit(nb.ImageRequest(prompt="a cat"))
    body = json.dumps(rig.status_body("t0")).encode()
    async with rig.http.post(rig.urls["t0"], data=slowly(body, 4)) as resp:
        assert resp.status == 200
    await settle()
    stats = rig.receiver.statistics()
    assert (stats.accepted, stats.rejected) == (1, 0)
    await rig.clock.run_until(task.done)
    assert (await task).urls == ("https://img.test/t0.png",)


async def test_f31_slow_chunked_oversize_callback_gets_413(rig: Rig) -> None:
    """A chunked body past the limit that trickles in is refused with 413, never 400."""
    await rig.client.submit(nb.ImageRequest(prompt="a cat"))
    big = b"z" * (1024 * 1024 + 10)
    async with rig.http.post(rig.urls["t0"], data=slowly(big, 3)) as resp:
        assert resp.status == 413


@contextlib.asynccontextmanager
async def splitting_proxy(upstream: str, *, chunked: bool) -> AsyncIterator[str]:
    """A 127.0.0.1 proxy to ``upstream`` that sends each answer in 4 writes 50 ms apart."""

    async def forward(request: web.Request) -> web.StreamResponse:
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method,
                upstream + request.path_qs,
                headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
                data=await request.read(),
            ) as answer,
        ):
            body = await answer.read()
            response = web.StreamResponse(status=answer.status)
            response.content_type = answer.content_type
            if chunked:
                response.enable_chunked_encoding()
            else:
                response.content_length = len(body)
            await response.prepare(request)
            async for piece in slowly(body, 4):
                await response.write(piece)
            await response.write_eof()
            return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_f31_create_answer_in_several_writes_keeps_the_task_id(chunked: bool) -> None:
    """F31: a create answer (and every status answer) split into 4 writes 50 ms apart is read
    whole: the client keeps the task id the provider created and finishes the task."""
    async with (
        Simulator("crun", latency=Latency(median=0.2)) as sim,
        splitting_proxy(sim.base_url, chunked=chunked) as base_url,
        nb.Client("crun", api_key=sim.api_key, base_url=base_url) as client,
    ):
        task = await client.submit(nb.ImageRequest(prompt="a cat"))
        result = await task
    assert sim.stats.creates == 1
    assert result.task_id == task.id
    assert task.id in sim.stats.checks  # created by the simulator, and checked
    assert result.urls


@contextlib.asynccontextmanager
async def half_sent(url: str, head: bytes, n: int = 1) -> AsyncIterator[list[asyncio.StreamReader]]:
    """``n`` connections to ``url``'s server, each having sent ``head`` and nothing more."""
    where = urlsplit(url)
    writers: list[asyncio.StreamWriter] = []
    readers: list[asyncio.StreamReader] = []
    try:
        for _ in range(n):
            reader, writer = await asyncio.open_connection(where.hostname, where.port)
            writers.append(writer)
            readers.append(reader)
            writer.write(head)
            await writer.drain()
        yield readers
    finally:
        for writer in writers:
            writer.close()


async def _closed(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before it closed the connection."""
    try:
        return await reader.read()
    except ConnectionResetError:
        return b""


async def test_f38_half_sent_heads_and_slow_bodies_are_cut_off(clock: FakeClock) -> None:
    """F38: 300 connections with half-sent heads and a slow body with a valid token are closed
    by the header and body timeouts, while a valid callback is still served."""
    receiver = nb.CallbackReceiver(header_timeout=0.3, body_timeout=0.3)
    async with rigged(clock, receiver) as rig:
        await rig.client.submit(nb.ImageRequest(prompt="a cat"))
        url = rig.urls["t0"]
        slow = f"POST {urlsplit(url).path} HTTP/1.1\r\nHost: h\r\nContent-Length: 200\r\n\r\n{{"
        async with (
            half_sent(url, b"POST /x HTTP/1.1\r\nHost: h\r\nX-A: ", 300) as heads,
            half_sent(url, slow.encode()) as (slow_body,),
        ):
            assert await rig.post(url, rig.status_body("t0")) == 200
            async with asyncio.timeout(5):
                assert set(await asyncio.gather(*(_closed(r) for r in heads))) == {b""}
                answer = await _closed(slow_body)
        assert answer.startswith(b"HTTP/1.1 408")
        stats = receiver.statistics()
        assert (stats.accepted, stats.rejected) == (1, 1)
        # Still serving once the stragglers are gone.
        assert await rig.post(url, rig.status_body("t0")) == 200


async def test_f38_connections_over_the_cap_are_closed_at_once() -> None:
    """F38: memory stays bounded: past ``max_connections`` a new connection is closed at once,
    however long the open ones may still take to send their heads."""
    async with nb.CallbackReceiver(max_connections=10, header_timeout=30.0) as receiver:
        assert receiver.public_url is not None
        async with half_sent(receiver.public_url, b"POST /", 30) as readers:
            closing = [asyncio.ensure_future(_closed(r)) for r in readers]
            done, still_open = await asyncio.wait(closing, timeout=1.0)
            assert (len(done), len(still_open)) == (20, 10)
            for waiting in still_open:
                waiting.cancel()
