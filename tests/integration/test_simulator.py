"""The simulator, driven with raw aiohttp requests (not through our client, so the two cannot
share a misreading of PROTOCOLS.md)."""

from __future__ import annotations

import asyncio
import json
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web

from nanobanana_async.testing import Faults, Latency, ServerLimits, Simulator

FAST = Latency(median=0.15, sigma=0.1)


@attrs.frozen
class Wire:
    """How to speak one provider by hand."""

    provider: str
    auth: Callable[[str], dict[str, str]]
    create_path: str
    create_body: dict[str, Any]
    task_id: Callable[[dict[str, Any]], str]
    status: Callable[[str], tuple[str, dict[str, str]]]
    state: Callable[[dict[str, Any]], object]
    done_state: object
    failed_state: object
    image_url: Callable[[dict[str, Any]], str]
    callback_body: Callable[[str], dict[str, Any]]
    invalid: tuple[dict[str, Any], ...]


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


WIRES = {
    "xingchao": Wire(
        "xingchao",
        _bearer,
        "/v1/banana/images",
        {"model": "nano-banana-pro", "prompt": "cat", "resolution": "4k", "size": "21:9"},
        lambda b: b["id"],
        lambda i: (f"/v1/result/{i}", {}),
        lambda b: b["status"],
        "completed",
        "failed",
        lambda b: b["image_url"],
        lambda p: {"model": "nano-banana", "prompt": p},
        (
            {"model": "nano-banana-2-stable", "prompt": "cat", "resolution": "4k"},
            {"model": "nano-banana", "prompt": "cat", "resolution": "1K"},
            {"model": "nano-banana", "prompt": "cat", "aspect_ratio": "1:1"},  # it is "size"
            {"model": "nano-banana", "prompt": ""},
            {"model": "gpt-image", "prompt": "cat"},
            {"model": "nano-banana", "prompt": "cat", "size": "auto"},
            {"model": "nano-banana", "prompt": "cat", "image_urls": ["https://x/a"] * 7},
        ),
    ),
    "crun": Wire(
        "crun",
        lambda k: {"x-api-key": k},
        "/api/v1/client/job/CreateTask",
        {
            "model": "google/nano-banana-2",
            "input": {
                "prompt": "cat",
                "aspect_ratio": "1:8",
                "resolution": "2K",
                "output_format": "jpg",
            },
        },
        lambda b: b["data"]["task_id"],
        lambda i: ("/api/v1/client/job/TaskInfo", {"task_id": i}),
        lambda b: b["data"]["status"],
        "success",
        "failed",
        lambda b: b["data"]["result"]["media_urls"][0],
        lambda p: {"model": "google/nano-banana-2", "input": {"prompt": p}},
        (
            {"model": "google/nano-banana-2", "input": {}},
            {"model": "google/nano-banana", "input": {"prompt": "c", "resolution": "2K"}},
            {"model": "google/nano-banana", "input": {"prompt": "c", "output_format": "jpg"}},
            {"model": "google/nano-banana-2", "input": {"prompt": "x" * 20_001}},
            {"model": "google/nano-banana-pro", "input": {"prompt": "c", "google_search": True}},
            # apixo's and xingchao's name; crun's is img_urls
            {"model": "google/nano-banana-2", "input": {"prompt": "c", "image_urls": []}},
            {
                "model": "google/nano-banana-2",
                "input": {"prompt": "c"},
                "callBackUrl": "https://x.test/cb",  # nanobananaapi's name
            },
            {
                "model": "google/nano-banana-2",
                "input": {"prompt": "c"},
                "callBackUrl": 5,
                "callback_url": "ftp://x",
            },
        ),
    ),
    "nanobananaapi": Wire(
        "nanobananaapi",
        _bearer,
        "/api/v1/nanobanana/generate-2",
        {
            "prompt": "cat",
            "imageUrls": [],
            "aspectRatio": "4:1",
            "resolution": "4K",
            "outputFormat": "png",
            "googleSearch": False,
        },
        lambda b: b["data"]["taskId"],
        lambda i: ("/api/v1/nanobanana/record-info", {"taskId": i}),
        lambda b: b["data"]["successFlag"],
        1,
        3,
        lambda b: b["data"]["response"]["resultImageUrl"],
        lambda p: {"prompt": p},
        (
            {"imageUrls": []},
            {"prompt": "c", "resolution": "1k"},
            {"prompt": "c", "outputFormat": "jpeg"},
            {"prompt": "c", "imageUrls": ["https://x/a"] * 15},
            {"prompt": "c", "aspectRatio": "7:3"},
            {"prompt": "c", "callback_url": "https://x.test/cb"},  # it is callBackUrl
        ),
    ),
    "apixo": Wire(
        "apixo",
        _bearer,
        "/generateTask/nano-banana-2",
        {
            "request_type": "async",
            "input": {
                "mode": "text-to-image",
                "prompt": "cat",
                "aspect_ratio": "9:16",
                "resolution": "2K",
            },
        },
        lambda b: b["data"]["taskId"],
        lambda i: ("/statusTask/nano-banana-2", {"taskId": i}),
        lambda b: b["data"]["state"],
        "success",
        "failed",
        lambda b: json.loads(b["data"]["resultJson"])["resultUrls"][0],
        lambda p: {
            "input": {
                "mode": "text-to-image",
                "prompt": p,
                "aspect_ratio": "1:1",
                "resolution": "1k",
            }
        },
        (
            {"input": {"prompt": "cat", "aspect_ratio": "1:1", "resolution": "1k"}},
            {"input": {"mode": "text-to-image", "prompt": "cat", "aspect_ratio": "1:1"}},
            {
                "input": {
                    "mode": "image-to-image",
                    "prompt": "cat",
                    "aspect_ratio": "1:1",
                    "resolution": "1k",
                }
            },
            {
                "request_type": "callback",
                "input": {
                    "mode": "text-to-image",
                    "prompt": "c",
                    "aspect_ratio": "1:1",
                    "resolution": "1k",
                },
            },
            {
                "input": {
                    "mode": "text-to-image",
                    "prompt": "x" * 20_001,
                    "aspect_ratio": "1:1",
                    "resolution": "1k",
                }
            },
            {
                "input": {
                    "mode": "text-to-image",
                    "prompt": "c",
                    "aspect_ratio": "1:1",
                    "resolution": "1k",
                    "googleSearch": True,  # it is google_search
                }
            },
        ),
    ),
}
PROVIDERS = sorted(WIRES)


async def _create(
    http: aiohttp.ClientSession, sim: Simulator, wire: Wire, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    async with http.post(
        sim.base_url + wire.create_path, json=body, headers=wire.auth(sim.api_key)
    ) as resp:
        return resp.status, await resp.json()


async def _status(
    http: aiohttp.ClientSession, sim: Simulator, wire: Wire, task_id: str
) -> tuple[int, dict[str, Any]]:
    path, params = wire.status(task_id)
    async with http.get(sim.base_url + path, params=params, headers=wire.auth(sim.api_key)) as resp:
        return resp.status, await resp.json()


def _code(status: int, body: dict[str, Any]) -> int:
    code = body.get("code")
    if isinstance(code, int) and code != 200:
        return code
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("code"), int):
        return int(error["code"])
    return status


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_create_poll_download_png(provider: str) -> None:
    """Valid create → polls → success with a URL serving a real PNG shaped by the ratio."""
    wire = WIRES[provider]
    async with Simulator(provider, latency=FAST) as sim, aiohttp.ClientSession() as http:
        status, body = await _create(http, sim, wire, wire.create_body)
        assert status == 200, body
        task_id = wire.task_id(body)
        for _ in range(100):
            status, body = await _status(http, sim, wire, task_id)
            if wire.state(body) == wire.done_state:
                break
            await asyncio.sleep(0.05)
        assert wire.state(body) == wire.done_state
        async with http.get(wire.image_url(body)) as resp:
            assert resp.status == 200
            assert resp.content_type == "image/png"
            png = await resp.read()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])
    expected = {"xingchao": 21 / 9, "crun": 1 / 8, "nanobananaapi": 4 / 1, "apixo": 9 / 16}
    assert width / height == pytest.approx(expected[provider], rel=0.05)
    assert sim.stats.creates == 1
    assert sim.stats.checks[task_id] >= 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_each_validation_failure_is_rejected_and_counted(provider: str) -> None:
    """Bodies the real service would refuse get its error shape, and are counted."""
    wire = WIRES[provider]
    async with Simulator(provider, latency=FAST) as sim, aiohttp.ClientSession() as http:
        for bad in wire.invalid:
            status, body = await _create(http, sim, wire, bad)
            assert _code(status, body) in (400, 422), (bad, body)
    assert sim.stats.rejected == len(wire.invalid)
    assert sim.stats.creates == 0


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_wrong_key_gets_401(provider: str) -> None:
    """A missing or wrong key is the provider's 401 and creates nothing."""
    wire = WIRES[provider]
    async with Simulator(provider, latency=FAST) as sim, aiohttp.ClientSession() as http:
        async with http.post(
            sim.base_url + wire.create_path, json=wire.create_body, headers=wire.auth("wrong")
        ) as resp:
            assert _code(resp.status, await resp.json()) == 401
        async with http.post(sim.base_url + wire.create_path, json=wire.create_body) as resp:
            assert _code(resp.status, await resp.json()) == 401
    assert sim.stats.unauthorized == 2
    assert sim.stats.creates == 0


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_window_limit_answers_429_with_retry_after(provider: str) -> None:
    """Beyond `requests` per window the simulator answers 429 with Retry-After."""
    wire = WIRES[provider]
    limits = ServerLimits(requests=5, per=30.0)
    async with (
        Simulator(provider, latency=FAST, limits=limits) as sim,
        aiohttp.ClientSession() as http,
    ):
        codes = []
        for _ in range(7):
            async with http.post(
                sim.base_url + wire.create_path,
                json=wire.create_body,
                headers=wire.auth(sim.api_key),
            ) as resp:
                codes.append(_code(resp.status, await resp.json()))
                retry_after = resp.headers.get("retry-after")
    assert codes == [200] * 5 + [429, 429]
    assert retry_after is not None
    assert 0 < float(retry_after) <= 30
    assert sim.stats.rate_limited == 2
    assert sim.stats.max_window == 7


async def test_concurrency_cap_answers_429() -> None:
    """Creating beyond `concurrent_tasks` running tasks is refused with 429."""
    wire = WIRES["apixo"]
    limits = ServerLimits(concurrent_tasks=2)
    async with (
        Simulator("apixo", latency=Latency(median=30), limits=limits) as sim,
        aiohttp.ClientSession() as http,
    ):
        codes = [_code(*(await _create(http, sim, wire, wire.create_body))) for _ in range(3)]
    assert codes == [200, 200, 429]
    assert sim.stats.max_concurrent == 2


@pytest.mark.parametrize("provider", ["crun", "nanobananaapi", "apixo"])
async def test_callbacks_are_delivered_in_the_provider_shape(provider: str) -> None:
    """A task with a callback URL is POSTed to it when it ends, in the provider's shape."""
    wire = WIRES[provider]
    received: list[dict[str, Any]] = []
    app = web.Application()

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/hook"
    body = json.loads(json.dumps(wire.create_body))
    if provider == "crun":
        body["callback_url"] = url
    elif provider == "nanobananaapi":
        body["callBackUrl"] = url
    else:
        body["request_type"], body["callback_url"] = "callback", url
    try:
        async with Simulator(provider, latency=FAST) as sim, aiohttp.ClientSession() as http:
            _, created = await _create(http, sim, wire, body)
            task_id = wire.task_id(created)
            for _ in range(100):
                if received:
                    break
                await asyncio.sleep(0.05)
    finally:
        await runner.cleanup()
    assert len(received) == 1
    payload = received[0]
    if provider == "crun":
        assert payload["task_id"] == task_id
        assert payload["status"] == "success"
    elif provider == "nanobananaapi":
        assert payload["code"] == 200
        assert payload["data"]["successFlag"] == 1
    else:
        assert payload["data"]["taskId"] == task_id
        assert payload["data"]["state"] == "success"
    assert sim.stats.callbacks_sent == 1


async def test_callbacks_are_retried_then_given_up() -> None:
    """A callback endpoint that keeps failing is tried 1 + 3 times, then counted failed."""
    wire = WIRES["apixo"]
    hits: list[int] = []
    app = web.Application()

    async def hook(request: web.Request) -> web.Response:
        hits.append(1)
        return web.Response(status=500)

    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    body = {
        **wire.create_body,
        "request_type": "callback",
        "callback_url": f"http://127.0.0.1:{port}/hook",
    }
    try:
        async with (
            Simulator("apixo", latency=FAST, callback_retry_scale=0.01) as sim,
            aiohttp.ClientSession() as http,
        ):
            await _create(http, sim, wire, body)
            for _ in range(100):
                if sim.stats.callbacks_failed:
                    break
                await asyncio.sleep(0.05)
    finally:
        await runner.cleanup()
    assert len(hits) == 4
    assert sim.stats.callbacks_failed == 1


@pytest.mark.parametrize(
    ("fault", "expect"),
    [
        ("server_error", "5xx"),
        ("reset", "disconnect"),
        ("truncated", "payload"),
        ("non_json", "html"),
        ("body_429", "429"),
    ],
)
async def test_fault_toggles_are_observable(fault: str, expect: str) -> None:
    """Each per-request fault shows up on the wire as that fault, and is counted."""
    wire = WIRES["crun"]
    faults = Faults(**{fault: 1.0})  # type: ignore[arg-type]
    async with (
        Simulator("crun", latency=FAST, faults=faults) as sim,
        aiohttp.ClientSession() as http,
    ):
        try:
            async with http.post(
                sim.base_url + wire.create_path,
                json=wire.create_body,
                headers=wire.auth(sim.api_key),
            ) as resp:
                raw = await resp.read()
                outcome = (resp.status, raw)
        except aiohttp.ServerDisconnectedError:
            outcome = "disconnect"  # type: ignore[assignment]
        except aiohttp.ClientPayloadError:
            outcome = "payload"  # type: ignore[assignment]
    assert sim.stats.faults[fault] == 1
    if expect == "5xx":
        assert json.loads(outcome[1])["code"] in (500, 502, 503)
    elif expect == "html":
        assert outcome[0] == 200
        assert outcome[1].startswith(b"<html>")
    elif expect == "429":
        assert outcome[0] == 200
        assert json.loads(outcome[1])["code"] == 429
    else:
        assert outcome == expect


async def test_reset_after_create_creates_the_task() -> None:
    """The ambiguous submit: the task exists although the client saw a reset."""
    wire = WIRES["apixo"]
    async with (
        Simulator("apixo", latency=FAST, faults=Faults(reset_after_create=1.0)) as sim,
        aiohttp.ClientSession() as http,
    ):
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await _create(http, sim, wire, wire.create_body)
    assert sim.stats.creates == 1


async def test_unknown_state_and_slow_faults() -> None:
    """unknown_state reports a state no client knows; slow delays the answer."""
    wire = WIRES["apixo"]
    faults = Faults(unknown_state=1.0, slow=1.0, slow_seconds=0.3, kinds=frozenset({"status"}))
    async with (
        Simulator("apixo", latency=Latency(median=30), faults=faults) as sim,
        aiohttp.ClientSession() as http,
    ):
        _, created = await _create(http, sim, wire, wire.create_body)
        loop = asyncio.get_running_loop()
        start = loop.time()
        _, body = await _status(http, sim, wire, wire.task_id(created))
        elapsed = loop.time() - start
    assert body["data"]["state"] == "warming_up"
    assert elapsed >= 0.3


@pytest.mark.parametrize(("marker", "provider"), [("[[policy]]", "apixo"), ("[[fail]]", "crun")])
async def test_failure_markers(marker: str, provider: str) -> None:
    """Prompt markers make tasks fail, content policy or generic."""
    wire = WIRES[provider]
    async with Simulator(provider, latency=FAST) as sim, aiohttp.ClientSession() as http:
        _, created = await _create(http, sim, wire, wire.callback_body(f"a cat {marker}"))
        task_id = wire.task_id(created)
        await asyncio.sleep(0.5)
        _, body = await _status(http, sim, wire, task_id)
    assert wire.state(body) == wire.failed_state
    text = json.dumps(body)
    assert ("CONTENT_VIOLATION" in text) if marker == "[[policy]]" else ("501" in text)


async def test_duplicate_creates_are_counted_and_images_expire() -> None:
    """The same parameters twice count as a duplicate; expired image URLs answer 404."""
    wire = WIRES["apixo"]
    async with (
        Simulator("apixo", latency=FAST, faults=Faults(expire_images=True)) as sim,
        aiohttp.ClientSession() as http,
    ):
        await _create(http, sim, wire, wire.create_body)
        _, created = await _create(http, sim, wire, wire.create_body)
        await asyncio.sleep(0.5)
        _, body = await _status(http, sim, wire, wire.task_id(created))
        async with http.get(wire.image_url(body)) as resp:
            assert resp.status == 404
    assert sim.stats.duplicate_creates == 1


def test_pytest_fixture_serves_sync_code(nanobanana_simulator: Simulator) -> None:
    """The plugin's fixture runs the simulator in a thread, usable from sync code."""
    import urllib.request

    request = urllib.request.Request(  # noqa: S310  loopback http only
        nanobanana_simulator.base_url + "/apikeys/current-balance",
        headers={"Authorization": f"Bearer {nanobanana_simulator.api_key}"},
    )
    with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310  loopback only
        assert json.loads(resp.read())["data"] == 1000.0  # unlimited credits


def test_readme_plugin_example_runs_in_a_project_without_asyncio_mode(tmp_path: Path) -> None:
    """The README's pytest-plugin example, copied into a fresh project with no pytest
    configuration and no pytest-asyncio, passes as written."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Testing your own code against the simulator", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "test_example.py").write_text(example)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # the project's own, empty config
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:asyncio", "-p", "no:xdist"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert "1 passed" in done.stdout
