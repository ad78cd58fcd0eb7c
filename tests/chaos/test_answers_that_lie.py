"""Answers that lie or that the provider's documents give a meaning (issue 20, items 12b, 13,
14): each ends a task the way its document says, or keeps checking it, never the wrong way."""

from __future__ import annotations

import asyncio
import json

import pytest

import nanobanana_async as nb
from nanobanana_async.testing import FakeClock, HttpRequest, HttpResponse, json_response
from tests.chaos.test_fault_matrix import scripted
from tests.fakeapi import FakeApixo


async def test_an_answer_about_another_task_is_not_this_tasks_result(clock: FakeClock) -> None:
    """12b: a success naming another task is unreadable; the task is checked again and ends
    with its own image."""
    server = FakeApixo(clock, latency=lambda i: 12.0)
    lies = 2

    def other(request: HttpRequest) -> HttpResponse | None:
        nonlocal lies
        if request.kind != "status" or lies == 0:
            return None
        lies -= 1
        result = json.dumps({"resultUrls": ["https://img.test/stolen.png"]})
        data = {"taskId": "someone-else", "state": "success", "resultJson": result}
        return json_response({"code": 200, "message": "success", "data": data})

    server.hook = other
    client, _ = scripted(clock, server)
    async with client:
        job = asyncio.ensure_future(client.generate("a cat"))
        await clock.run_until(job.done, limit=300)
    result = job.result()
    assert result.urls == ("https://img.test/t0.png",)
    assert server.count("status") >= 3  # two lies, then the task's own answer


def _crun(code: int, message: str) -> object:
    def answer(request: HttpRequest) -> HttpResponse:
        if request.kind == "submit":
            return json_response({"code": 200, "message": "success", "data": {"task_id": "t1"}})
        # The code list crun documents for every answer, seed 002 (docs.crun.ai,
        # google/nano-banana, "Response status code"), here under HTTP 200 as crun sends it.
        return json_response({"code": code, "message": message, "data": None})

    return answer


@pytest.mark.parametrize(
    ("code", "message"),
    [
        # Seed 002: "501: Generation Failed - Content generation task failed".
        (501, "Generation Failed"),
        # Seed 002: "505: Feature Disabled - The requested feature is currently disabled".
        (505, "Feature Disabled"),
    ],
)
async def test_crun_501_and_505_on_a_status_check_end_the_task_at_once(
    clock: FakeClock, code: int, message: str
) -> None:
    """13: crun's 501/505 answered on a check end the task with GenerationFailedError (code
    kept) at the first check, not as a passing 5xx retried until the deadline."""
    client, transport = scripted(clock, _crun(code, message), provider="crun")
    async with client:
        job = asyncio.ensure_future(client.generate("a cat", timeout=900))
        await clock.run_until(job.done, limit=1000)
        ended = clock.now()
    error = job.exception()
    assert isinstance(error, nb.GenerationFailedError), error
    assert (error.code, error.task_id) == (code, "t1")
    assert message in str(error)
    assert transport.count("status") == 1
    assert ended - 1000 < 60  # the clock fixture starts at 1000 s


@pytest.mark.parametrize("kind", ["submit", "status"])
async def test_apixo_403_refuses_one_request_not_the_key(clock: FakeClock, kind: str) -> None:
    """14: apixo's HTTP 403 is "forbidden/content policy" (PROTOCOLS.md 4, "Errors [C]": "401
    bad key · 402 insufficient balance · 403 forbidden/content policy"): the one prompt is
    refused (RequestRejectedError), the others of the batch go on; the key is not blamed."""
    server = FakeApixo(clock, latency=lambda i: 12.0)
    refused = json_response(
        {"code": 403, "message": "Forbidden", "data": {"error": "content policy"}}, 403
    )

    def hook(request: HttpRequest) -> HttpResponse | None:
        if request.kind != kind:
            return None
        if kind == "submit":
            flagged = "[[flagged]]" in request.json["input"]["prompt"]  # type: ignore[index]
        else:
            flagged = request.params["taskId"] == "t0"
        return refused if flagged else None

    server.hook = hook
    client, _ = scripted(clock, server)
    prompts = ["[[flagged]] one" if kind == "submit" else "one", "two", "three"]
    async with client:
        jobs = [asyncio.ensure_future(client.generate(p)) for p in prompts]
        await clock.run_until(lambda: all(j.done() for j in jobs), limit=300)
    error = jobs[0].exception()
    assert isinstance(error, nb.RequestRejectedError), error
    assert not isinstance(error, nb.AuthenticationError)
    assert "content policy" in str(error)
    if kind == "status":
        assert error.task_id == "t0"
    assert all(j.result().urls for j in jobs[1:])
