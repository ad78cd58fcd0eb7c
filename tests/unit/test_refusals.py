"""Refusals are refusals: a create the provider's docs call "not created" never ends as
"may have been accepted", and only the retryable ones are sent again (issue 11, item 1)."""

from __future__ import annotations

import asyncio

import pytest

import nanobanana_async as nb
from nanobanana_async.testing import FakeClock, HttpRequest, HttpResponse, json_response
from tests.chaos.test_fault_matrix import scripted


class Crun:
    """crun's create answers: ``refuse(n)`` picks the body code for the n-th create (None = ok)."""

    def __init__(
        self,
        refuse: dict[int, int] | None = None,
        every_other: int | None = None,
        mirror: bool = False,
    ):
        self.mirror = mirror  # HTTP status = body code (whether crun does is undocumented)
        self.creates = 0
        self.created: list[str] = []
        self.refuse = refuse or {}
        self.every_other = every_other

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.kind == "submit":
            n = self.creates
            self.creates += 1
            code = self.refuse.get(n)
            if code is None and self.every_other is not None and n % 2 == 0:
                code = self.every_other
            if code is not None:
                body = {"code": code, "message": f"refused {code}", "data": None}
                return json_response(body, status=code if self.mirror else 200)
            task_id = f"t{len(self.created)}"
            self.created.append(task_id)
            return json_response({"code": 200, "message": "success", "data": {"task_id": task_id}})
        task_id = request.params["task_id"]
        return json_response(
            {
                "code": 200,
                "message": "success",
                "data": {
                    "task_id": task_id,
                    "status": "success",
                    "result": {"media_urls": [f"https://i/{task_id}.png"]},
                },
            }
        )


@pytest.mark.parametrize("mirror", [False, True], ids=["http-200", "http-455"])
async def test_crun_455_on_half_the_creates_never_ends_unknown(
    clock: FakeClock, mirror: bool
) -> None:
    """With crun answering 455 to half the creates, every prompt is created exactly once,
    whether the HTTP status is 200 or mirrors the body code (PROTOCOLS.md 2: [?])."""
    server = Crun(every_other=455, mirror=mirror)
    client, _ = scripted(clock, server, provider="crun")
    async with client:
        jobs = [asyncio.ensure_future(client.generate(f"cat {i}")) for i in range(10)]
        await clock.run_until(lambda: all(j.done() for j in jobs))
    errors = [j.exception() for j in jobs if j.exception() is not None]
    # A prompt may run out of retry budget: then it ends refused (nothing created), never unknown.
    assert all(isinstance(e, nb.ProviderRefusedError) and e.code == 455 for e in errors)
    done = [j.result() for j in jobs if j.exception() is None]
    assert len(done) >= 8
    # Each create the server accepted belongs to exactly one prompt: none was created twice.
    assert len(server.created) == len(done)
    assert len({r.urls for r in done}) == len(done)


@pytest.mark.parametrize("mirror", [False, True], ids=["http-200", "http-mirrored"])
@pytest.mark.parametrize("code", [501, 505])
async def test_crun_final_refusal_is_typed_and_not_retried(
    clock: FakeClock, code: int, mirror: bool
) -> None:
    """501 / 505 mean "not created" and will not change: raised once, as ProviderRefusedError,
    also when the HTTP status mirrors the body code (a 5xx that is still crun's refusal)."""
    server = Crun(refuse={0: code}, mirror=mirror)
    client, _ = scripted(clock, server, provider="crun")
    async with client:
        job = asyncio.ensure_future(client.generate("a cat"))
        await clock.run_until(job.done)
    error = job.exception()
    assert isinstance(error, nb.ProviderRefusedError)
    assert not isinstance(error, nb.SubmitOutcomeUnknownError)
    assert (error.code, error.retryable) == (code, False)
    assert f"refused {code}" in str(error)
    assert server.creates == 1


async def test_crun_455_to_the_last_attempt_is_a_refusal_not_unknown(clock: FakeClock) -> None:
    """Maintenance on every attempt: the error says refused (nothing created), not unknown."""
    server = Crun(refuse=dict.fromkeys(range(50), 455))
    client, _ = scripted(clock, server, provider="crun", limits=nb.Limits(concurrent_tasks=1))
    async with client:
        job = asyncio.ensure_future(client.generate("a cat"))
        await clock.run_until(job.done)
        error = job.exception()
        assert isinstance(error, nb.ProviderRefusedError)
        assert (error.code, error.retryable) == (455, True)
        assert server.created == []
        # The refusal released its slot (the only one): the next create goes through.
        server.refuse = {}
        again = asyncio.ensure_future(client.generate("a dog"))
        await clock.run_until(again.done)
        assert again.result().urls == ("https://i/t0.png",)


@pytest.mark.parametrize(
    ("code", "error_type"),
    [
        (400, nb.APIError),
        (401, nb.AuthenticationError),
        (402, nb.InsufficientCreditsError),
        (422, nb.APIError),
    ],
)
@pytest.mark.parametrize("mirror", [False, True], ids=["http-200", "http-mirrored"])
async def test_crun_documented_refusals_are_typed(
    clock: FakeClock, code: int, error_type: type[nb.APIError], mirror: bool
) -> None:
    """The docs' other create answers are typed refusals, never 'may have been accepted'."""
    server = Crun(refuse={0: code}, mirror=mirror)
    client, _ = scripted(clock, server, provider="crun")
    async with client:
        job = asyncio.ensure_future(client.generate("a cat"))
        await clock.run_until(job.done)
    error = job.exception()
    assert isinstance(error, error_type)
    assert not isinstance(error, nb.ProviderUnavailableError)
    assert server.creates == 1


def _refusal(provider: str, status: int) -> HttpResponse:
    if provider == "xingchao":
        return json_response({"error": f"refused {status}"}, status=status)
    detail = "msg" if provider == "nanobananaapi" else "message"
    return json_response({"code": status, detail: f"refused {status}", "data": None}, status=status)


def _created(provider: str) -> HttpResponse:
    if provider == "xingchao":
        return json_response(
            {"id": "t1", "object": "nanobanana", "created": 0, "model": "m", "status": "queued"}
        )
    key = "task_id" if provider == "crun" else "taskId"
    return json_response({"code": 200, "message": "success", "data": {key: "t1"}})


def _finished(provider: str) -> HttpResponse:
    url = "https://i/t1.png"
    if provider == "xingchao":
        body: dict[str, object] = {
            "id": "t1",
            "object": "image.generation",
            "created": 0,
            "model": "m",
            "status": "completed",
            "image_url": url,
            "error": None,
        }
        return json_response(body)
    data: dict[str, object] = {
        "crun": {"task_id": "t1", "status": "success", "result": {"media_urls": [url]}},
        "nanobananaapi": {"taskId": "t1", "successFlag": 1, "response": {"resultImageUrl": url}},
        "apixo": {
            "taskId": "t1",
            "state": "success",
            "resultJson": '{"resultUrls": ["https://i/t1.png"]}',
        },
    }[provider]
    return json_response({"code": 200, "msg": "success", "message": "success", "data": data})


PROVIDERS = ["xingchao", "crun", "nanobananaapi", "apixo"]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, nb.RequestRejectedError),
        (401, nb.AuthenticationError),
        (402, nb.InsufficientCreditsError),
    ],
)
async def test_every_providers_400_401_402_on_create_is_a_refusal(
    clock: FakeClock, provider: str, status: int, error_type: type[nb.APIError]
) -> None:
    """Issue 11 item 1: 'every provider's 400/401/402' means not created: a typed error after
    one create, never 'may have been accepted' and never sent again."""
    creates: list[HttpRequest] = []

    def server(request: HttpRequest) -> HttpResponse:
        assert request.kind == "submit"
        creates.append(request)
        return _refusal(provider, status)

    client, _ = scripted(clock, server, provider=provider)
    async with client:
        job = asyncio.ensure_future(client.generate("a cat"))
        await clock.run_until(job.done)
    error = job.exception()
    assert isinstance(error, error_type)
    assert not isinstance(error, nb.SubmitOutcomeUnknownError)
    assert f"refused {status}" in str(error)
    assert len(creates) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_every_providers_429_on_create_is_sent_again(clock: FakeClock, provider: str) -> None:
    """429 created nothing and may pass: the create is sent again and the prompt gets its one
    task."""
    creates: list[HttpRequest] = []

    def server(request: HttpRequest) -> HttpResponse:
        if request.kind != "submit":
            return _finished(provider)
        creates.append(request)
        return _refusal(provider, 429) if len(creates) == 1 else _created(provider)

    client, _ = scripted(clock, server, provider=provider)
    async with client:
        job = asyncio.ensure_future(client.generate("a cat"))
        await clock.run_until(job.done)
    assert job.result().urls == ("https://i/t1.png",)
    assert len(creates) == 2
