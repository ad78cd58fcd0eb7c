"""Several simulated accounts at once, scheduled outages and per-account server-side counts
(issue 21, item 8), driven with raw aiohttp requests."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import nanobanana_async as nb
from nanobanana_async.testing import Faults, Latency, Outage, ServerLimits, Simulator, Simulators
from nanobanana_async.testing.__main__ import main as simulator_main
from tests.integration.test_simulator import PROVIDERS, WIRES, _code, _create, _status

FAST = Latency(median=0.15, sigma=0.1)
SLOW = Latency(median=30.0, sigma=0.1)
MAINTENANCE = {"crun": 455, "apixo": 503, "xingchao": 503, "nanobananaapi": 503}


def _body(provider: str, prompt: str) -> dict[str, Any]:
    """The wire's valid create body with ``prompt`` in it."""
    body = json.loads(json.dumps(WIRES[provider].create_body))
    body.get("input", body)["prompt"] = prompt
    return body


async def _create_code(http: aiohttp.ClientSession, sim: Simulator, prompt: str = "cat") -> int:
    return _code(*await _create(http, sim, WIRES[sim.provider], _body(sim.provider, prompt)))


async def _sleep_until(sims: Simulators | Simulator, elapsed: float) -> None:
    assert sims.started_at is not None
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, sims.started_at + elapsed - loop.time()))


def _elapsed(sims: Simulators | Simulator) -> float:
    assert sims.started_at is not None
    return asyncio.get_running_loop().time() - sims.started_at


async def test_several_accounts_each_keep_their_own_limits_and_counts() -> None:
    """apixo and crun run at once on their own ports; each enforces and counts its own limits."""
    async with (
        Simulators(
            [
                Simulator("apixo", latency=SLOW, limits=ServerLimits(concurrent_tasks=1)),
                Simulator("crun", latency=SLOW, limits=ServerLimits(requests=2, per=30.0)),
            ]
        ) as sims,
        aiohttp.ClientSession() as http,
    ):
        assert sorted(sims) == ["apixo", "crun"]
        assert sims["apixo"].origin != sims["crun"].origin
        apixo = [await _create_code(http, sims["apixo"], f"a{i}") for i in range(2)]
        crun = [await _create_code(http, sims["crun"], f"c{i}") for i in range(3)]
    assert apixo == [200, 429]
    assert crun == [200, 200, 429]
    stats = sims.stats
    assert (stats["apixo"].creates, stats["apixo"].rate_limited) == (1, 1)
    assert (stats["crun"].creates, stats["crun"].rate_limited) == (2, 1)
    assert stats["apixo"].max_concurrent == 1
    assert stats["crun"].max_concurrent == 2
    assert stats["apixo"].refused == stats["crun"].refused == 0


async def test_two_accounts_of_one_provider_are_named_in_a_mapping() -> None:
    """Two keys on one provider are two named accounts; unnamed twins are refused up front."""
    with pytest.raises(ValueError, match="name each in a mapping"):
        Simulators([Simulator("apixo"), Simulator("apixo")])
    with pytest.raises(ValueError, match="at least one"):
        Simulators([])
    async with (
        Simulators({"apixo": Simulator("apixo"), "apixo-2": Simulator("apixo")}) as sims,
        aiohttp.ClientSession() as http,
    ):
        assert sims["apixo"].api_key != sims["apixo-2"].api_key
        assert await _create_code(http, sims["apixo-2"]) == 200
        env = sims.env()
    assert env["NANOBANANA_API_KEY_APIXO_2"] == sims["apixo-2"].api_key
    assert env["NANOBANANA_BASE_URL_APIXO"] == sims["apixo"].base_url
    assert (sims.stats["apixo"].creates, sims.stats["apixo-2"].creates) == (0, 1)


async def test_maintenance_outage_refuses_creates_between_its_times() -> None:
    """Each provider answers creates with its documented maintenance refusal (crun 455, else 503)
    from `start` to `end` after the group started, creates nothing meanwhile, and counts it;
    status checks are still answered."""
    start, end = 0.6, 1.6
    outage = Outage(start=start, end=end)
    sims = Simulators([Simulator(p, latency=FAST, outages=[outage]) for p in PROVIDERS])
    async with sims, aiohttp.ClientSession() as http:
        expected_refusals = 0
        first: dict[str, str] = {}
        for when in (0.0, (start + end) / 2, end + 0.1):
            await _sleep_until(sims, when)
            for name, sim in sims.items():
                wire = WIRES[name]
                before = _elapsed(sims)
                status, body = await _create(http, sim, wire, _body(name, f"{name} at {when}"))
                after = _elapsed(sims)
                code = _code(status, body)
                if after < start or before >= end:
                    assert code == 200, (name, when)
                    first.setdefault(name, wire.task_id(body))
                elif start <= before and after < end:
                    assert code == MAINTENANCE[name], (name, when)
                    expected_refusals += 1
                    if name in first:
                        assert _code(*await _status(http, sim, wire, first[name])) == 200
        refusals = {name: stats.refused for name, stats in sims.stats.items()}
        creates = {name: stats.creates for name, stats in sims.stats.items()}
    assert sum(refusals.values()) == expected_refusals > 0
    assert all(refusals[name] + creates[name] == 3 for name in sims)


async def test_maintenance_outage_can_refuse_status_checks_too() -> None:
    """With kinds={"status"} a task created before the outage cannot be checked during it."""
    wire = WIRES["crun"]
    outage = Outage(start=0.0, end=60.0, kinds=frozenset({"status"}))
    async with (
        Simulator("crun", latency=FAST, outages=[outage]) as sim,
        aiohttp.ClientSession() as http,
    ):
        status, body = await _create(http, sim, wire, wire.create_body)
        assert _code(status, body) == 200
        assert _code(*await _status(http, sim, wire, wire.task_id(body))) == 455
    assert (sim.stats.creates, sim.stats.refused) == (1, 1)


async def test_connection_refusing_outage_refuses_then_serves_again_on_the_same_port() -> None:
    """Between its times the server does not listen (connect refused, pooled connections
    closed), then listens again at the same address and the account works as before."""
    start, end = 0.6, 1.4
    outage = Outage(start=start, end=end, refuse_connections=True)
    async with (
        Simulator("apixo", latency=FAST, outages=[outage]) as sim,
        aiohttp.ClientSession() as http,
    ):
        base_url = sim.base_url
        assert await _create_code(http, sim, "before") == 200
        await _sleep_until(sim, (start + end) / 2)
        with pytest.raises(aiohttp.ClientConnectorError):
            await _create_code(http, sim, "during")
        await _sleep_until(sim, end + 0.2)
        assert sim.base_url == base_url
        assert await _create_code(http, sim, "after") == 200
    assert sim.stats.creates == 2
    assert sim.created_prompts() == {"before": 1, "after": 1}


async def test_reset_after_create_drops_a_share_of_creates_and_still_creates_them() -> None:
    """A share of creates is reset after the task exists: the server's count says which."""
    faults = Faults(reset_after_create=0.3, kinds=frozenset({"create"}))
    async with (
        Simulators([Simulator("apixo", latency=FAST, faults=faults, seed=3)]) as sims,
        aiohttp.ClientSession() as http,
    ):
        resets = 0
        for i in range(20):
            try:
                await _create_code(http, sims["apixo"], f"p{i}")
            except aiohttp.ServerDisconnectedError:
                resets += 1
    stats = sims.stats["apixo"]
    assert 0 < resets < 20
    assert stats.faults["reset_after_create"] == resets
    assert stats.creates == 20


async def test_prompts_created_on_several_accounts_are_reported() -> None:
    """The group names each prompt paid for on more than one account."""
    async with (
        Simulators([Simulator("apixo", latency=FAST), Simulator("crun", latency=FAST)]) as sims,
        aiohttp.ClientSession() as http,
    ):
        await _create_code(http, sims["apixo"], "twice")
        await _create_code(http, sims["crun"], "twice")
        await _create_code(http, sims["crun"], "once")
    assert sims.prompts_on_several() == {"twice": ["apixo", "crun"]}


def test_outage_times_and_kinds_are_checked() -> None:
    """An outage that ends before it starts, starts before 0 or names no request kind fails."""
    with pytest.raises(ValueError, match="end after it starts"):
        Outage(start=2.0, end=1.0)
    with pytest.raises(ValueError, match="start"):
        Outage(start=-1.0, end=1.0)
    with pytest.raises(ValueError, match="kinds"):
        Outage(start=0.0, end=1.0, kinds=frozenset({"image"}))


def test_simulator_command_rejects_unknown_accounts(capsys: pytest.CaptureFixture[str]) -> None:
    """Unknown providers, outages of no account and malformed outages are usage errors."""
    for argv in (
        ["--provider", "apixo,nope"],
        ["--provider", "apixo", "--outage", "crun:1-2"],
        ["--provider", "crun", "--outage", "crun:2"],
        ["--provider", "crun", "--outage", "crun:1-2:sometimes"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            simulator_main(argv)
        assert exit_info.value.code == 2, argv
    assert "nope" in capsys.readouterr().err


def test_simulator_command_serves_several_providers_with_an_outage() -> None:
    """`--provider apixo,crun --outage crun:0-600` serves both; crun refuses creates with 455."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nanobanana_async.testing",
            "--provider",
            "apixo,crun",
            "--port",
            "0",
            "--requests",
            "100",
            "--per",
            "10",
            "--outage",
            "crun:0-600",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        urls = dict(proc.stdout.readline().split(" simulator at ") for _ in range(2))
        env = dict(
            proc.stdout.readline().removeprefix("export ").strip().split("=", 1) for _ in range(4)
        )
        assert sorted(urls) == ["apixo", "crun"]
        assert env["NANOBANANA_BASE_URL_CRUN"] == urls["crun"].strip()
        codes = {}
        for name in ("apixo", "crun"):
            key = env[f"NANOBANANA_API_KEY_{name.upper()}"]
            wire = WIRES[name]
            request = urllib.request.Request(  # noqa: S310  loopback http only
                urls[name].strip() + wire.create_path,
                data=json.dumps(wire.create_body).encode(),
                headers={**wire.auth(key), "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310
                codes[name] = _code(resp.status, json.loads(resp.read()))
        assert codes == {"apixo": 200, "crun": 455}
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


async def test_readme_several_accounts_example_runs() -> None:
    """The README's several-accounts example runs as written (inside a coroutine)."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Testing your own code against the simulator", 1)[1]
    example = next(b for b in section.split("```python\n")[1:] if "Simulators(" in b)
    code = example.split("```", 1)[0]
    source = "async def example():\n" + textwrap.indent(code, "    ")
    namespace: dict[str, Any] = {}
    exec(compile(source, "README.md", "exec"), namespace)  # noqa: S102  our own README
    await namespace["example"]()


def test_maintenance_is_readable_from_a_sync_test_beside_a_threaded_simulator() -> None:
    """`in_maintenance` answers from another thread: True inside the outage, False after."""
    simulator = Simulator("crun", outages=[Outage(start=0.0, end=1.0)])
    simulator.start_in_thread()
    try:
        assert simulator.in_maintenance("create")
        assert not simulator.in_maintenance("status")
        time.sleep(1.1)
        assert not simulator.in_maintenance("create")
    finally:
        simulator.stop_thread()


async def test_clients_read_crun_maintenance_as_a_refusal_and_apixo_503_as_unknown() -> None:
    """Our client on crun is refused (455: documented, nothing created) during the outage and
    gets its image once it ends, with one create; on apixo the 503 of a create is no proof
    that nothing was created, so it reaches the caller as an unknown outcome, while the
    server's count shows that nothing was."""
    sims = Simulators(
        [
            Simulator("crun", latency=FAST, outages=[Outage(start=0.0, end=1.0)]),
            Simulator("apixo", latency=FAST, outages=[Outage(start=0.0, end=60.0)]),
        ]
    )

    async def generate(name: str) -> nb.ImageResult:
        sim = sims[name]
        # Retries spread over a few seconds, so the refusals cannot use them all up inside
        # the outage (the default three attempts may all fall within half a second).
        retry = nb.RetryPolicy(attempts=30, base_delay=0.2, max_delay=0.4)
        async with nb.Client(
            name, api_key=sim.api_key, base_url=sim.base_url, retry=retry
        ) as client:
            return await client.generate(f"a cat on {name}", timeout=30)

    async with sims:
        result = await generate("crun")
        with pytest.raises(nb.SubmitOutcomeUnknownError):
            await generate("apixo")
    assert result.urls
    assert sims.stats["crun"].refused >= 1
    assert sims.stats["crun"].creates == 1
    assert (sims.stats["apixo"].refused, sims.stats["apixo"].creates) == (1, 0)


async def test_clients_read_refused_connections_as_nothing_sent() -> None:
    """During a refused-connection outage our client gets ConnectError (nothing was sent,
    safe to send elsewhere), and the server saw no request."""
    outage = Outage(start=0.0, end=60.0, refuse_connections=True)
    async with Simulator("apixo", latency=FAST, outages=[outage]) as sim:
        await _sleep_until(sim, 0.05)  # the listener is closed by then
        retry = nb.RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02)
        async with nb.Client(
            "apixo", api_key=sim.api_key, base_url=sim.base_url, retry=retry
        ) as client:
            with pytest.raises(nb.ConnectError):
                await client.generate("a cat", timeout=10)
    assert sim.stats.total_requests == 0
