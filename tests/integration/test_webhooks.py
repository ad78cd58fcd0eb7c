"""Callbacks end to end: the simulator calls the receiver, the client confirms by polling."""

from __future__ import annotations

import asyncio
import socket
import statistics

import aiohttp
import pytest
from aiohttp import web

import nanobanana_async as nb
from nanobanana_async.testing import (
    FakeClock,
    Latency,
    ScriptedTransport,
    ServerLimits,
    Simulator,
)
from tests.fakeapi import FakeApixo

# Enough tasks for the client to learn the latency and aim its own checks late.
LATENCY = Latency(median=0.4, sigma=0.3)
LIMITS = nb.Limits(requests=3000, per=10.0, concurrent_tasks=30)
N = 60


async def _run(provider: str) -> tuple[Simulator, float]:
    server_limits = ServerLimits(requests=3000, per=10.0, concurrent_tasks=30)
    async with (
        nb.CallbackReceiver() as receiver,
        Simulator(provider, latency=LATENCY, limits=server_limits, seed=5) as sim,
        nb.Client(
            provider,
            api_key=sim.api_key,
            base_url=sim.base_url,
            limits=LIMITS,
            callbacks=receiver,
        ) as client,
    ):
        results = await asyncio.gather(*(client.generate(f"p{i}", timeout=60) for i in range(N)))
    assert len({r.task_id for r in results}) == N
    assert sim.stats.rate_limited == 0
    return sim, statistics.median(sim.stats.lags)


# A callback's confirm-check comes within one loopback round trip or two of the task's end
# (0.02-0.09 s measured, quiet or under load); a client that ignored callbacks would check on
# its schedule, which aims late when callbacks are expected (5 s measured with hints dropped).
# Between the two, a bound a loaded machine does not reach. (Against polling's own lag, about
# 0.1 s, a factor of 2 failed under load: test_lost_callbacks_cost_a_delay_never_a_task makes
# that comparison on a fake clock.)
CALLBACK_LAG_BOUND = 1.0


@pytest.mark.parametrize("provider", ["crun", "nanobananaapi", "apixo"])
async def test_callbacks_resolve_every_task_with_about_one_check(provider: str) -> None:
    """With callbacks, every task resolves at ≤ 1.1 checks per task, checked as soon as its
    callback arrives."""
    with_callbacks, lag = await _run(provider)
    assert with_callbacks.stats.callbacks_sent == N
    assert with_callbacks.stats.checks_per_task() <= 1.1
    assert lag < CALLBACK_LAG_BOUND


async def test_lost_callbacks_cost_a_delay_never_a_task(clock: FakeClock) -> None:
    """With 30% of callbacks never delivered, polling still resolves every task, later."""
    server = FakeApixo(clock, latency=lambda i: 12.0)
    urls = server.callback_urls
    async with (
        nb.CallbackReceiver() as receiver,
        nb.Client(
            "apixo",
            api_key="k",
            transport=ScriptedTransport(server),
            clock=clock,
            callbacks=receiver,
        ) as client,
        aiohttp.ClientSession() as http,
    ):
        tasks = [await client.submit(nb.ImageRequest(prompt=f"p{i}")) for i in range(10)]
        await clock.advance(12.5)
        delivered = [0, 1, 2, 4, 5, 7, 8]  # 3 of 10 callbacks are lost
        for i in delivered:
            body = {"code": 200, "data": {"taskId": tasks[i].id, "state": "success"}}
            async with http.post(urls[i], json=body) as resp:
                assert resp.status == 200
        await clock.advance(0.1)
        assert [i for i, t in enumerate(tasks) if t.done()] == delivered
        await clock.run_until(lambda: all(t.done() for t in tasks), limit=60)
        lost_seen_after = clock.now() - 1000.0
        results = [await t for t in tasks]
    assert all(r.urls for r in results)
    assert receiver.statistics().accepted == len(delivered)
    # The lost ones wait for the safety-net polling: within apixo's 3 s interval of the end.
    assert 12.6 < lost_seen_after <= 15.0


async def test_nanobananaapi_pro_needs_and_gets_a_callback_url() -> None:
    """nano-banana-pro requires a callback URL on nanobananaapi; the receiver supplies it."""
    async with (
        nb.CallbackReceiver() as receiver,
        Simulator("nanobananaapi", latency=Latency(median=0.3)) as sim,
    ):
        async with nb.Client("nanobananaapi", api_key=sim.api_key, base_url=sim.base_url) as bare:
            with pytest.raises(nb.InvalidRequestError, match=r"\$\.callback_url"):
                await bare.generate("a cat", model="nano-banana-pro")
        async with nb.Client(
            "nanobananaapi", api_key=sim.api_key, base_url=sim.base_url, callbacks=receiver
        ) as client:
            result = await client.generate("a cat", model="nano-banana-pro", resolution="4K")
    assert result.urls
    assert sim.stats.callbacks_sent == 1


async def test_receiver_mounted_in_a_user_app() -> None:
    """The receiver works as a sub-app of the caller's own aiohttp application."""
    receiver = nb.CallbackReceiver()
    app = web.Application()

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/health", health)
    app.add_subapp("/hooks", receiver.app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.public_url = f"http://127.0.0.1:{port}/hooks"
    try:
        async with (
            Simulator("crun", latency=Latency(median=0.3)) as sim,
            nb.Client("crun", api_key=sim.api_key, base_url=sim.base_url, callbacks=receiver) as c,
        ):
            results = await asyncio.gather(*(c.generate(f"p{i}") for i in range(5)))
    finally:
        await runner.cleanup()
    assert all(r.urls for r in results)
    assert receiver.statistics().accepted + receiver.statistics().duplicates == 5
    assert sim.stats.callbacks_sent == 5


@pytest.mark.parametrize("secret", ["from-the-env", b"", 5])
def test_a_secret_that_is_not_bytes_is_refused_at_construction(secret: object) -> None:
    """secret="text" (read from the environment) was accepted and failed as hmac's TypeError
    at the first submit, after the client started; b"" silently became a random secret, so
    callbacks stopped surviving a restart. Both are a ConfigurationError when made."""
    with pytest.raises(nb.ConfigurationError, match="secret must be non-empty bytes"):
        nb.CallbackReceiver(secret=secret, public_url="https://hooks.example.com")  # type: ignore[arg-type]
    assert nb.CallbackReceiver(secret=b"k").public_url is None  # bytes still taken


def test_receiver_needs_a_public_url_before_use() -> None:
    """Submitting through a receiver that has no public URL is a configuration error."""
    with pytest.raises(nb.ConfigurationError):
        nb.CallbackReceiver(public_url="ftp://x")

    async def go() -> None:
        receiver = nb.CallbackReceiver()
        async with (
            Simulator("apixo", latency=Latency(median=0.3)) as sim,
            nb.Client(
                "apixo", api_key=sim.api_key, base_url=sim.base_url, callbacks=receiver
            ) as client,
        ):
            with pytest.raises(nb.ConfigurationError):
                await client.generate("a cat")
            assert sim.stats.total_requests == 0

    asyncio.run(go())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("path", ["", "/hooks/nb"], ids=["root", "deep"])
async def test_receiver_serves_at_the_path_of_its_public_url(path: str) -> None:
    """``start(public_url=...)`` serves where that URL points (a proxy mapping the root, or a
    deeper path), so the provider's callbacks arrive instead of meeting a 404."""
    port = _free_port()
    receiver = nb.CallbackReceiver()
    await receiver.start("127.0.0.1", port, public_url=f"http://127.0.0.1:{port}{path}")
    try:
        async with (
            Simulator("crun", latency=Latency(median=0.2)) as sim,
            nb.Client("crun", api_key=sim.api_key, base_url=sim.base_url, callbacks=receiver) as c,
        ):
            await asyncio.gather(*(c.generate(f"p{i}") for i in range(3)))
    finally:
        await receiver.aclose()
    stats = receiver.statistics()
    assert (stats.accepted + stats.duplicates + stats.early, stats.rejected) == (3, 0)
    assert (sim.stats.callbacks_sent, sim.stats.callbacks_failed) == (3, 0)
