"""The client over real aiohttp with aioresponses: exact URLs, typed failures, request counts."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from aioresponses import aioresponses

import nanobanana_async as nb
from nanobanana_async.testing import FakeClock

pytestmark = pytest.mark.usefixtures("aioresponses_compat")

BASE = {
    "xingchao": "https://zcbservice.aizfw.cn/kyyReactApiServer",
    "crun": "https://api.crun.ai",
    "nanobananaapi": "https://api.nanobananaapi.ai",
    "apixo": "https://api.apixo.ai/api/v1",
}
SUBMIT = {
    "xingchao": (
        "/v1/banana/images",
        {
            "id": "T1",
            "object": "nanobanana",
            "created": 1,
            "model": "nano-banana-2",
            "status": "queued",
        },
    ),
    "crun": (
        "/api/v1/client/job/CreateTask",
        {"code": 200, "message": "success", "data": {"task_id": "T1"}},
    ),
    "nanobananaapi": (
        "/api/v1/nanobanana/generate-2",
        {"code": 200, "message": "success", "data": {"taskId": "T1"}},
    ),
    "apixo": (
        "/generateTask/nano-banana-2",
        {"code": 200, "message": "success", "data": {"taskId": "T1"}},
    ),
}
STATUS_URL = {
    "xingchao": re.compile(r".*/v1/result/T1$"),
    "crun": re.compile(r".*/api/v1/client/job/TaskInfo\?task_id=T1$"),
    "nanobananaapi": re.compile(r".*/api/v1/nanobanana/record-info\?taskId=T1$"),
    "apixo": re.compile(r".*/statusTask/nano-banana-2\?taskId=T1$"),
}


def running(provider: str) -> dict[str, Any]:
    return {
        "xingchao": {"id": "T1", "status": "processing", "image_url": None},
        "crun": {"code": 200, "message": "success", "data": {"task_id": "T1", "status": "running"}},
        "nanobananaapi": {
            "code": 200,
            "msg": "success",
            "data": {"taskId": "T1", "successFlag": 0},
        },
        "apixo": {
            "code": 200,
            "message": "success",
            "data": {"taskId": "T1", "state": "processing"},
        },
    }[provider]


def succeeded(provider: str) -> dict[str, Any]:
    url = "https://img.test/T1.png"
    return {
        "xingchao": {"id": "T1", "status": "completed", "image_url": url},
        "crun": {
            "code": 200,
            "message": "success",
            "data": {"task_id": "T1", "status": "success", "result": {"media_urls": [url]}},
        },
        "nanobananaapi": {
            "code": 200,
            "msg": "success",
            "data": {"taskId": "T1", "successFlag": 1, "response": {"resultImageUrl": url}},
        },
        "apixo": {
            "code": 200,
            "message": "success",
            "data": {
                "taskId": "T1",
                "state": "success",
                "resultJson": json.dumps({"resultUrls": [url]}),
            },
        },
    }[provider]


def _count(mocked: aioresponses, method: str) -> int:
    return sum(len(calls) for (m, _), calls in mocked.requests.items() if m == method)


@pytest.mark.parametrize("provider", sorted(BASE))
async def test_submit_poll_result(provider: str, clock: FakeClock, canary: str) -> None:
    """Each provider: submit to its documented URL, poll, and get the image URL."""
    path, created = SUBMIT[provider]
    with aioresponses() as mocked:
        mocked.post(BASE[provider] + path, payload=created)
        mocked.get(STATUS_URL[provider], payload=running(provider))
        mocked.get(STATUS_URL[provider], payload=succeeded(provider))
        async with nb.Client(provider, api_key=canary, clock=clock) as client:
            job = asyncio.ensure_future(client.generate("a cat"))
            await clock.run_until(job.done, step=0.5)
            result = job.result()
        posted = next(calls for (m, _), calls in mocked.requests.items() if m == "POST")
        headers = posted[0].kwargs["headers"]
    assert result.urls == ("https://img.test/T1.png",)
    assert result.task_id == "T1"
    assert result.provider == provider
    assert _count(mocked, "GET") == 2
    if provider == "crun":
        assert headers == {"x-api-key": canary}
    else:
        assert headers == {"Authorization": f"Bearer {canary}"}


@pytest.mark.parametrize("provider", sorted(BASE))
async def test_auth_failure_on_submit_is_not_retried(provider: str, clock: FakeClock) -> None:
    """401 on submit raises AuthenticationError after exactly one request."""
    path, _ = SUBMIT[provider]
    body = {"code": 401, "message": "Unauthorized", "msg": "Unauthorized", "data": None}
    with aioresponses() as mocked:
        mocked.post(BASE[provider] + path, status=401, payload=body, repeat=True)
        async with nb.Client(provider, api_key="bad", clock=clock) as client:
            with pytest.raises(nb.AuthenticationError):
                await client.generate("a cat")
    assert _count(mocked, "POST") == 1


async def test_insufficient_credits_on_submit(clock: FakeClock) -> None:
    """402 raises InsufficientCreditsError, not retried."""
    with aioresponses() as mocked:
        mocked.post(
            BASE["apixo"] + SUBMIT["apixo"][0],
            status=402,
            repeat=True,
            payload={"code": 402, "message": "Insufficient balance", "data": None},
        )
        async with nb.Client("apixo", api_key="k", clock=clock) as client:
            with pytest.raises(nb.InsufficientCreditsError):
                await client.generate("a cat")
    assert _count(mocked, "POST") == 1


@pytest.mark.parametrize("provider", sorted(BASE))
async def test_invalid_input_sends_no_request(provider: str, clock: FakeClock) -> None:
    """Unknown model, bad size, too many refs, bad timeout: typed error, zero requests."""
    with aioresponses() as mocked:
        async with nb.Client(provider, api_key="k", clock=clock) as client:
            for kwargs in (
                {"model": "dall-e-3"},
                {"resolution": "16K"},
                {"aspect_ratio": "7:5"},
                {"image_urls": [f"https://x.test/{i}.png" for i in range(15)]},
                {"timeout": 0},
            ):
                with pytest.raises(nb.InvalidRequestError):
                    await client.generate("a cat", **kwargs)  # type: ignore[arg-type]
        assert mocked.requests == {}


def test_configuration_errors_are_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unknown provider, missing key, bad base URL and bad limits raise ConfigurationError."""
    monkeypatch.delenv("NANOBANANA_API_KEY", raising=False)
    with pytest.raises(nb.ConfigurationError):
        nb.Client("midjourney", api_key="k")
    with pytest.raises(nb.ConfigurationError):
        nb.Client("apixo")
    with pytest.raises(nb.ConfigurationError):
        nb.Client("apixo", api_key="k", base_url="ftp://x")
    with pytest.raises(nb.ConfigurationError):
        nb.Limits(requests=0)
    with pytest.raises(nb.ConfigurationError):
        nb.Limits(concurrent_tasks=-1)


async def test_environment_supplies_key_and_base_url(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    """NANOBANANA_API_KEY and NANOBANANA_BASE_URL are used when not passed."""
    monkeypatch.setenv("NANOBANANA_API_KEY", "env-key")
    monkeypatch.setenv("NANOBANANA_BASE_URL", "http://127.0.0.1:9/api/v1")
    with aioresponses() as mocked:
        mocked.post(
            "http://127.0.0.1:9/api/v1/generateTask/nano-banana-2", payload=SUBMIT["apixo"][1]
        )
        async with nb.Client("apixo", clock=clock) as client:
            task = await client.submit(nb.ImageRequest(prompt="cat"))
        posted = next(iter(mocked.requests.values()))
    assert task.id == "T1"
    assert posted[0].kwargs["headers"] == {"Authorization": "Bearer env-key"}
