"""Issue 11's done-when for the documented options, against the simulator: what the provider
RECEIVES, not only that it did not refuse. apixo gets ``provider = "official"`` (a top-level
field: seed 004 lists "Routing strategy: auto, value, or official" beside request_type and
callback_url, not among the model's input); nanobananaapi nano-banana gets ``numImages`` and the
per-call ``callBackUrl``, which the simulator then calls."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

import nanobanana_async as nb
from nanobanana_async._redact import Secret
from nanobanana_async._transport import AiohttpTransport
from nanobanana_async.providers import DRIVERS
from nanobanana_async.testing import HttpRequest, HttpResponse, Latency, Simulator

FAST = Latency(median=0.2, sigma=0.1)


class Recording:
    """The real transport, keeping every request it sends."""

    def __init__(self, sim: Simulator, provider: str) -> None:
        self.sent: list[HttpRequest] = []
        self._inner = AiohttpTransport(
            base_url=sim.base_url, scheme=DRIVERS[provider].auth_scheme, key=Secret(sim.api_key)
        )

    async def send(self, request: HttpRequest, *, timeout: float) -> HttpResponse:
        self.sent.append(request)
        return await self._inner.send(request, timeout=timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_apixo_receives_the_routing_and_an_undocumented_value_sends_nothing() -> None:
    async with Simulator("apixo", latency=FAST) as sim:
        transport = Recording(sim, "apixo")
        async with nb.Client("apixo", api_key=sim.api_key, transport=transport) as client:
            await client.generate("a cat", provider_options={"provider": "official"})
            sent = len(transport.sent)
            with pytest.raises(nb.InvalidRequestError, match="auto, official, value"):
                await client.generate("a cat", provider_options={"provider": "cheapest"})
            assert len(transport.sent) == sent
        creates = [r for r in transport.sent if r.kind == "submit"]
        assert len(creates) == 1
        body = creates[0].json
        assert isinstance(body, dict)
        assert body["provider"] == "official"
        assert "provider" not in body["input"]
        # The strict simulator took that very body: created, nothing refused.
        assert (sim.stats.creates, sim.stats.rejected) == (1, 0)


async def test_nanobananaapi_nb1_receives_num_images_and_the_per_call_callback() -> None:
    arrived: list[dict[str, object]] = []
    event = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        arrived.append(await request.json())
        event.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/hook"
    try:
        async with Simulator("nanobananaapi", latency=FAST) as sim:
            transport = Recording(sim, "nanobananaapi")
            async with nb.Client("nanobananaapi", api_key=sim.api_key, transport=transport) as c:
                result = await c.generate(
                    "a fox", model="nano-banana", num_images=3, callback_url=url
                )
            # The callback comes when the task ends; polling may see the end first.
            await asyncio.wait_for(event.wait(), timeout=10)
    finally:
        await runner.cleanup()
    (create,) = [r for r in transport.sent if r.kind == "submit"]
    assert isinstance(create.json, dict)
    assert (create.json["numImages"], create.json["callBackUrl"]) == (3, url)
    assert len(result.urls) == 3
    assert len(arrived) == 1
    data = arrived[0]["data"]
    assert isinstance(data, dict)
    assert data["taskId"] == result.task_id
