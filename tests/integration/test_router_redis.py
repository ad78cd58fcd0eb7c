"""Router circuits shared through the coordinator: what one process learns of an outage, the
others know at once, and a half-open circuit gets one probe among all of them (real Redis)."""

from __future__ import annotations

import asyncio

import nanobanana_async as nb
from nanobanana_async.testing import ScriptedTransport
from tests.chaos.test_fault_matrix_router import Maintenance
from tests.redis_server import RedisServer
from tests.unit.test_refusals import Crun

RETRY = nb.RetryPolicy(base_delay=0.001, max_delay=0.002)


def router(redis: RedisServer, down: Crun, up: Crun) -> nb.Router:
    """One process's router: its own clients and breakers, the shared coordinator."""
    clients = [
        nb.Client(
            "crun",
            api_key=key,
            transport=ScriptedTransport(server),
            coordinator=redis.url,
            retry=RETRY,
        )
        for key, server in (("key-a", down), ("key-b", up))
    ]
    # priority: A is the one to use whenever its circuit lets it.
    return nb.Router(
        clients,
        strategy="priority",
        owns_clients=True,
        circuit=nb.CircuitPolicy(cooldown=0.5),
        random=lambda: 0.5,
    )


async def test_an_open_circuit_is_shared_and_probed_once_among_processes(
    redis_server: RedisServer,
) -> None:
    """Router one opens crun A's circuit after five refusals; router two sends nothing to A
    while it is open; after the cooldown, of four submits from both, exactly one probes A."""
    down, up = Maintenance(), Crun()
    async with router(redis_server, down, up) as one, router(redis_server, down, up) as two:
        for i in range(5):
            await one.submit(nb.ImageRequest(prompt=f"p{i}"))
        assert one.statistics().accounts[0].circuit == "open"
        refused = down.refused
        task = await two.submit(nb.ImageRequest(prompt="elsewhere"))
        assert [at.account for at in task.attempts] == [two.accounts[1]]
        assert down.refused == refused
        assert two.statistics().accounts[0].circuit == "open"
        await asyncio.sleep(0.6)
        down.down = False
        tasks = await asyncio.gather(
            *(r.submit(nb.ImageRequest(prompt=f"q{i}")) for i in range(2) for r in (one, two))
        )
    assert len(down.created) == 1
    assert sum(t.attempts[-1].account == one.accounts[0] for t in tasks) == 1
