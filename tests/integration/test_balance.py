"""Balance and credits (issue 11, item 2): ``Client.balance()`` against the simulator, whose
creates cost credits and, at zero, get the provider's own insufficient-credits answer."""

from __future__ import annotations

import pytest

import nanobanana_async as nb
from nanobanana_async.testing import (
    FakeClock,
    HttpRequest,
    HttpResponse,
    Latency,
    ScriptedTransport,
    Simulator,
)

FAST = Latency(median=0.2, sigma=0.1)


@pytest.mark.parametrize("provider", ["crun", "apixo"])
async def test_balance_reports_the_simulators_credits(provider: str) -> None:
    """balance() returns the simulator's credits, and each create takes one."""
    async with (
        Simulator(provider, latency=FAST, credits=5, create_cost=2) as sim,
        nb.Client(provider, api_key=sim.api_key, base_url=sim.base_url) as client,
    ):
        assert await client.balance() == nb.Balance(provider, 5.0)
        task = await client.submit(nb.ImageRequest(prompt="a cat"))
        assert await client.balance() == nb.Balance(provider, 3.0)
        await task


@pytest.mark.parametrize("provider", ["crun", "apixo"])
async def test_a_create_at_zero_credits_is_insufficient_credits(provider: str) -> None:
    """At zero the provider's own 402 answer: InsufficientCreditsError, nothing created."""
    async with (
        Simulator(provider, latency=FAST, credits=1) as sim,
        nb.Client(provider, api_key=sim.api_key, base_url=sim.base_url) as client,
    ):
        await client.generate("a cat")
        with pytest.raises(nb.InsufficientCreditsError):
            await client.generate("a dog")
        assert sim.stats.creates == 1


@pytest.mark.parametrize("provider", ["xingchao", "nanobananaapi"])
async def test_balance_without_an_endpoint_sends_nothing(provider: str) -> None:
    """No documented balance endpoint: a typed error naming the provider, no request sent."""
    sent: list[HttpRequest] = []

    def server(request: HttpRequest) -> HttpResponse:
        sent.append(request)
        raise AssertionError("nothing may be sent")

    async with nb.Client(
        provider, api_key="k", transport=ScriptedTransport(server), clock=FakeClock(0.0)
    ) as client:
        with pytest.raises(nb.NotSupportedError, match=provider) as caught:
            await client.balance()
    assert caught.value.provider == provider
    assert sent == []
