"""Each provider's documented request, sent to the simulator, gets the documented answer; the
documents' refusals are refused (issue 11, item 8).

Bodies come from the original documents in ``shared/seeds/`` (named per case) or, where a seed
holds only a parameter list, from that list and ``shared/providers/PROTOCOLS.md``. Callback
URLs point at 127.0.0.1's discard port: nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest

import nanobanana_async as nb
from nanobanana_async._journal import Journal
from nanobanana_async.testing import Latency, Simulator

FAST = Latency(median=0.2, sigma=0.1)
NOWHERE = "http://127.0.0.1:9/callback"
XINGCHAO = "/v1/banana/images"


@attrs.frozen
class Case:
    provider: str
    path: str
    body: dict[str, Any]
    #: the top-level answer fields the document shows (value None: any value)
    answer: dict[str, Any]
    #: where the task id is, as a path of keys
    task_id_at: tuple[str, ...]


def _auth(provider: str, key: str) -> dict[str, str]:
    # crun: "Usage: Add to request header: x-api-key: YOUR_API_KEY" (seed 002); the others
    # "Authorization: Bearer YOUR_API_KEY" (seeds 001, 003, PROTOCOLS.md 4).
    return {"x-api-key": key} if provider == "crun" else {"Authorization": f"Bearer {key}"}


CASES = {
    # Seed 001 (xingchao), "Code Example" and "Success Response".
    "xingchao": Case(
        "xingchao",
        "/v1/banana/images",
        {
            "model": "nano-banana-2",
            "prompt": "A cute orange cat sitting on a windowsill, golden hour lighting",
            "resolution": "2k",
            "size": "16:9",
        },
        {"object": "nanobanana", "model": "nano-banana-2", "id": None, "created": None},
        ("id",),
    ),
    # Seed 002 (crun): model "google/nano-banana", body {model, input, callback_url};
    # PROTOCOLS.md 2, "Create response": {"code":200,"message":"success","data":{"task_id":…}}.
    "crun": Case(
        "crun",
        "/api/v1/client/job/CreateTask",
        {
            "model": "google/nano-banana",
            "input": {"prompt": "a lighthouse", "aspect_ratio": "16:9", "output_format": "png"},
            "callback_url": NOWHERE,
        },
        {"code": 200, "message": "success"},
        ("data", "task_id"),
    ),
    # Seed 003 (nanobananaapi generate-2), "Parameter Overview", with its example prompt.
    "nanobananaapi": Case(
        "nanobananaapi",
        "/api/v1/nanobanana/generate-2",
        {
            "prompt": "a happy dog running in the park",
            "imageUrls": [],
            "aspectRatio": "auto",
            "resolution": "1K",
            "googleSearch": False,
            "outputFormat": "jpg",
        },
        {"code": 200, "message": "success"},
        ("data", "taskId"),
    ),
    # Seed 004 (apixo nano-banana-2), "Request Body" and "Response": taskId on success.
    "apixo": Case(
        "apixo",
        "/generateTask/nano-banana-2",
        {
            "request_type": "async",
            "provider": "auto",
            "input": {
                "mode": "text-to-image",
                "prompt": "a lighthouse at dusk",
                "aspect_ratio": "21:9",
                "resolution": "2k",
                "output_format": "jpg",
                "google_search": False,
            },
        },
        {"code": 200, "message": "success"},
        ("data", "taskId"),
    ),
}


async def _post(sim: Simulator, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(sim.base_url + path, json=body, headers=_auth(sim.provider, sim.api_key)) as r,
    ):
        return r.status, await r.json()


@pytest.mark.parametrize("provider", sorted(CASES))
async def test_each_documented_example_is_accepted_as_documented(provider: str) -> None:
    case = CASES[provider]
    async with Simulator(provider, latency=FAST) as sim:
        status, answer = await _post(sim, case.path, case.body)
    assert status == 200, answer
    for name, value in case.answer.items():
        assert name in answer, (name, answer)
        if value is not None:
            assert answer[name] == value, (name, answer)
    task_id: Any = answer
    for key in case.task_id_at:
        task_id = task_id[key]
    assert isinstance(task_id, str)
    assert task_id
    assert sim.stats.creates == 1


async def test_xingchao_answers_a_refused_create_as_a_failed_task() -> None:
    """Seed 001, "Failure Response": the create itself answers ``status: "failed"`` with an
    ``error``, in the success response's shape."""
    body = {"model": "nano-banana-2", "prompt": "something [[refused]]"}
    async with Simulator("xingchao", latency=FAST) as sim:
        status, answer = await _post(sim, "/v1/banana/images", body)
    assert status == 200
    assert (answer["object"], answer["status"]) == ("nanobanana", "failed")
    assert answer["error"] == "Invalid prompt: content policy violation"
    assert answer["id"]


@pytest.mark.parametrize(
    ("provider", "path", "body", "code"),
    [
        # PROTOCOLS.md 4, "Errors": the documented body of a 400, field for field.
        (
            "apixo",
            "/generateTask/nano-banana-2",
            {"input": {"mode": "text-to-image", "aspect_ratio": "1:1", "resolution": "1k"}},
            400,
        ),
        # PROTOCOLS.md 4: google_search and resolution are "—" for nano-banana.
        (
            "apixo",
            "/generateTask/nano-banana",
            {"input": {"mode": "text-to-image", "prompt": "c", "google_search": True}},
            400,
        ),
        (
            "apixo",
            "/generateTask/nano-banana",
            {"input": {"mode": "text-to-image", "prompt": "c", "resolution": "1k"}},
            400,
        ),
        # Seed 002: "Resolution is currently fixed to 1K on v2 channel." (Its output_format
        # "is not supported and may be ignored": not a refusal.)
        (
            "crun",
            "/api/v1/client/job/CreateTask",
            {"model": "google/nano-banana-v2", "input": {"prompt": "c", "resolution": "2K"}},
            422,
        ),
        # PROTOCOLS.md 2: crun's reference images are input.img_urls, its callback field the
        # snake_case callback_url.
        (
            "crun",
            "/api/v1/client/job/CreateTask",
            {"model": "google/nano-banana-2", "input": {"prompt": "c", "image_urls": []}},
            422,
        ),
        (
            "crun",
            "/api/v1/client/job/CreateTask",
            {"model": "google/nano-banana-2", "input": {"prompt": "c"}, "callBackUrl": NOWHERE},
            422,
        ),
        # PROTOCOLS.md 3: generate requires callBackUrl; numImages is 1-4.
        (
            "nanobananaapi",
            "/api/v1/nanobanana/generate",
            {"prompt": "c", "type": "TEXTTOIAMGE"},
            400,
        ),
        (
            "nanobananaapi",
            "/api/v1/nanobanana/generate",
            {"prompt": "c", "type": "TEXTTOIAMGE", "callBackUrl": NOWHERE, "numImages": 5},
            400,
        ),
        # Seed 001: resolution 2k is for the pro models (nano-banana-2 excepted: the page's own
        # example sends it); aspect ratio is "size", without "auto".
        (
            "xingchao",
            "/v1/banana/images",
            {"model": "nano-banana", "prompt": "c", "resolution": "2k"},
            400,
        ),
        (
            "xingchao",
            "/v1/banana/images",
            {"model": "nano-banana", "prompt": "c", "size": "auto"},
            400,
        ),
    ],
)
async def test_what_the_documents_refuse_is_refused(
    provider: str, path: str, body: dict[str, Any], code: int
) -> None:
    async with Simulator(provider, latency=FAST) as sim:
        status, answer = await _post(sim, path, body)
    # crun answers errors in the body with HTTP 200; xingchao's error body is undocumented.
    body_code = answer.get("code") if provider != "xingchao" else answer["error"]["code"]
    assert (status if provider != "crun" else body_code) == code, answer
    assert sim.stats.creates == 0
    if provider == "apixo" and "prompt" not in body["input"]:
        assert answer == {
            "code": 400,
            "message": "Invalid request",
            "data": {"error": "Missing required field: input.prompt"},
        }


async def test_nanobananaapi_nb1_documented_fields_make_several_images() -> None:
    """PROTOCOLS.md 3, generate: prompt, type, callBackUrl (required), numImages 1-4,
    imageUrls, watermark, image_size; a task of numImages images shows every URL (how is
    undocumented: a list in resultImageUrl)."""
    body = {
        "prompt": "a fox",
        "type": "TEXTTOIAMGE",
        "callBackUrl": NOWHERE,
        "numImages": 3,
        "watermark": "mine",
        "image_size": "16:9",
    }
    async with Simulator("nanobananaapi", latency=Latency(median=0.05, sigma=0.1)) as sim:
        status, answer = await _post(sim, "/api/v1/nanobanana/generate", body)
        assert (status, answer["code"]) == (200, 200)
        task_id = answer["data"]["taskId"]
        urls: Any = None
        for _ in range(100):
            async with (
                aiohttp.ClientSession() as http,
                http.get(
                    sim.base_url + "/api/v1/nanobanana/record-info",
                    params={"taskId": task_id},
                    headers=_auth("nanobananaapi", sim.api_key),
                ) as r,
            ):
                record = (await r.json())["data"]
            if record["successFlag"] == 1:
                urls = record["response"]["resultImageUrl"]
                break
            await asyncio.sleep(0.05)
    assert isinstance(urls, list)
    assert len(urls) == 3


async def test_a_create_answered_failed_ends_the_task_it_does_not_hide_it(tmp_path: Path) -> None:
    """The client meets xingchao's create-time failure as ContentPolicyError with the task id,
    frees the slot and journals the task as failed: never "may have been accepted"."""
    async with Simulator("xingchao", latency=FAST) as sim:
        async with nb.Client(
            "xingchao", api_key=sim.api_key, base_url=sim.base_url, journal=tmp_path / "j.db"
        ) as client:
            with pytest.raises(nb.ContentPolicyError) as caught:
                await client.generate("something [[refused]]")
            assert client.statistics().in_flight == 0
        assert caught.value.task_id
        assert not isinstance(caught.value, nb.SubmitOutcomeUnknownError)
    journal = Journal(tmp_path / "j.db")
    try:
        (row,) = await journal.entries()
    finally:
        await journal.aclose()
    assert (row.state, row.task_id) == ("failed", caught.value.task_id)


async def test_the_clients_option_bodies_are_what_the_documents_accept() -> None:
    """Against the strict simulator: apixo routing reaches the provider and an undocumented
    value is refused before I/O; nanobananaapi nano-banana takes numImages and the per-call
    callBackUrl, and the result holds every image."""
    async with Simulator("apixo", latency=FAST) as sim:
        async with nb.Client("apixo", api_key=sim.api_key, base_url=sim.base_url) as client:
            routed = await client.generate("a cat", provider_options={"provider": "official"})
            with pytest.raises(nb.InvalidRequestError):
                await client.generate("a cat", provider_options={"provider": "cheapest"})
        assert (sim.stats.creates, sim.stats.rejected) == (1, 0)
    assert routed.urls
    async with Simulator("nanobananaapi", latency=FAST) as sim:
        async with nb.Client("nanobananaapi", api_key=sim.api_key, base_url=sim.base_url) as c:
            several = await c.generate(
                "a fox", model="nano-banana", num_images=2, watermark="me", callback_url=NOWHERE
            )
        assert (sim.stats.creates, sim.stats.rejected) == (1, 0)
    assert len(several.urls) == 2
