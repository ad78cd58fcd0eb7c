"""The documented options only one provider or model has (issue 11, item 3): num_images and
watermark (nanobananaapi nano-banana), a callback URL per call, and provider_options (apixo's
routing). Sent as documented; anything undocumented refused before any request."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

import nanobanana_async as nb
from nanobanana_async._journal import request_key
from nanobanana_async.cli._inputs import read_requests
from nanobanana_async.providers import DRIVERS, validate
from nanobanana_async.testing import (
    FakeClock,
    HttpRequest,
    HttpResponse,
    ScriptedTransport,
    json_response,
)

HOOK = "https://hooks.example.com/cb/1"


def apixo(request: HttpRequest) -> HttpResponse:
    if request.kind == "submit":
        return json_response({"code": 200, "message": "success", "data": {"taskId": "t1"}})
    data = {"taskId": "t1", "state": "success", "resultJson": '{"resultUrls": ["https://i/1"]}'}
    return json_response({"code": 200, "message": "success", "data": data})


def nanobananaapi(request: HttpRequest) -> HttpResponse:
    if request.kind == "submit":
        return json_response({"code": 200, "message": "success", "data": {"taskId": "t1"}})
    # How several images come back is undocumented: a list in resultImageUrl is read whole.
    urls = [f"https://i/{n}.png" for n in range(3)]
    data = {"taskId": "t1", "successFlag": 1, "response": {"resultImageUrl": urls}}
    return json_response({"code": 200, "msg": "success", "data": data})


async def test_apixo_routing_is_sent_as_documented(clock: FakeClock) -> None:
    """apixo gets its top-level "provider" field (seed 004, "Routing strategy")."""
    transport = ScriptedTransport(apixo)
    async with nb.Client("apixo", api_key="k", transport=transport, clock=clock) as client:
        job = client.generate("a cat", provider_options={"provider": "official"})
        result = await clock_run(clock, job)
    assert result.urls == ("https://i/1",)
    submit = transport.requests[0]
    assert isinstance(submit.json, dict)
    assert submit.json["provider"] == "official"


@pytest.mark.parametrize(
    ("provider", "fields", "problem"),
    [
        ("apixo", {"provider_options": {"provider": "cheapest"}}, "allowed: auto, official, value"),
        ("apixo", {"provider_options": {"speed": "fast"}}, "documents no option 'speed'"),
        ("crun", {"provider_options": {"provider": "official"}}, "(documented: none)"),
        ("apixo", {"num_images": 2}, "takes no num_images"),
        ("nanobananaapi", {"model": "nano-banana", "num_images": 5}, "makes 1 to 4"),
        ("nanobananaapi", {"model": "nano-banana-2", "watermark": "me"}, "takes no watermark"),
        ("xingchao", {"callback_url": HOOK}, "offers no callbacks"),
        ("nanobananaapi", {"model": "nano-banana"}, "requires a callback URL \\(a per-call"),
    ],
)
async def test_undocumented_options_are_refused_before_any_request(
    clock: FakeClock, provider: str, fields: dict[str, object], problem: str
) -> None:
    transport = ScriptedTransport(apixo)
    async with nb.Client(provider, api_key="k", transport=transport, clock=clock) as client:
        with pytest.raises(nb.InvalidRequestError, match=problem):
            await client.submit(nb.ImageRequest(prompt="a cat", **fields))  # type: ignore[arg-type]
    assert transport.requests == []


async def test_nanobananaapi_nb1_gets_num_images_watermark_and_the_callback(
    clock: FakeClock,
) -> None:
    """nano-banana requires a callback URL: one given per call reaches it without a receiver,
    with numImages and watermark; the result holds every image."""
    transport = ScriptedTransport(nanobananaapi)
    async with nb.Client("nanobananaapi", api_key="k", transport=transport, clock=clock) as c:
        job = c.generate(
            "a cat", model="nano-banana", num_images=3, watermark="mine", callback_url=HOOK
        )
        result = await clock_run(clock, job)
    body = transport.requests[0].json
    assert isinstance(body, dict)
    assert (body["numImages"], body["watermark"], body["callBackUrl"]) == (3, "mine", HOOK)
    assert len(result.urls) == 3


def test_one_image_is_accepted_everywhere() -> None:
    """num_images=1 is what every model makes, so no provider refuses it."""
    for provider in ("xingchao", "crun", "nanobananaapi", "apixo"):
        validate(DRIVERS[provider], nb.ImageRequest(prompt="a cat", num_images=1))


def test_options_are_part_of_the_request() -> None:
    """A changed option is a new task in a journal; the request stays frozen, equal, hashable
    and picklable (it travels inside errors)."""
    mine = {"provider": "official"}
    request = nb.ImageRequest(prompt="a cat", provider_options=mine)
    mine["provider"] = "value"
    assert request.provider_options == {"provider": "official"}
    assert request == nb.ImageRequest(prompt="a cat", provider_options={"provider": "official"})
    assert hash(request) == hash(pickle.loads(pickle.dumps(request)))  # noqa: S301 (our bytes)
    keys = {
        request_key("apixo", r)
        for r in (
            nb.ImageRequest(prompt="a cat"),
            request,
            nb.ImageRequest(prompt="a cat", num_images=2),
            nb.ImageRequest(prompt="a cat", watermark="x"),
        )
    }
    assert len(keys) == 4
    with pytest.raises(nb.InvalidRequestError, match=r"\$\.num_images"):
        nb.ImageRequest(prompt="a cat", num_images=0)
    with pytest.raises(nb.InvalidRequestError, match=r"\$\.provider_options"):
        nb.ImageRequest(prompt="a cat", provider_options="provider=official")  # type: ignore[arg-type]


def test_csv_and_jsonl_columns(tmp_path: Path) -> None:
    """Batch files carry the new fields: CSV cells as text ("name=value;..."), JSONL as JSON."""
    csv = tmp_path / "p.csv"
    csv.write_text("prompt,num_images,watermark,provider_options\na cat,3,mine,provider=value\n")
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "a dog", "provider_options": {"provider": "official"}}\n')
    ((_, from_csv),) = read_requests(csv, {}, lambda r: None)
    ((_, from_jsonl),) = read_requests(jsonl, {}, lambda r: None)
    assert (from_csv.num_images, from_csv.watermark) == (3, "mine")
    assert from_csv.provider_options == {"provider": "value"}
    assert from_jsonl.provider_options == {"provider": "official"}


async def clock_run(clock: FakeClock, job: Coroutine[Any, Any, nb.ImageResult]) -> nb.ImageResult:
    """Run ``job`` to its end, moving the fake clock through the polling."""
    task = asyncio.ensure_future(job)
    await clock.run_until(task.done, limit=600)
    return await task


async def test_a_per_call_callback_url_wins_over_the_clients_receiver(clock: FakeClock) -> None:
    """``callback_url`` given for one request is what the provider gets, and the client's
    ``callbacks=`` receiver registers nothing for it; other requests still use the receiver."""
    receiver = nb.CallbackReceiver(public_url="https://hooks.example.com/receiver")
    transport = ScriptedTransport(apixo)
    async with nb.Client(
        "apixo", api_key="k", transport=transport, clock=clock, callbacks=receiver
    ) as client:
        await clock_run(clock, client.generate("a cat", callback_url=HOOK))
        assert receiver.statistics().remembered == 0
        await clock_run(clock, client.generate("a dog"))
    first, second = (r.json for r in transport.requests if r.kind == "submit")
    assert isinstance(first, dict)
    assert isinstance(second, dict)
    assert (first["callback_url"], first["request_type"]) == (HOOK, "callback")
    assert str(second["callback_url"]).startswith("https://hooks.example.com/receiver/")
