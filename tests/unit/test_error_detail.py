"""Errors carry the provider's words (issue 11, item 4): apixo's 400 names the reason in
``data.error``, and the message says it, bounded."""

from __future__ import annotations

import asyncio
import json
import pickle

import pytest

import nanobanana_async as nb
from nanobanana_async.providers import DRIVERS
from nanobanana_async.testing import FakeClock, HttpRequest, HttpResponse, json_response
from tests.chaos.test_fault_matrix import scripted


def _answer(status: int, body: object) -> HttpResponse:
    return HttpResponse(status=status, body=json.dumps(body).encode())


def test_apixo_400_says_the_reason_from_data_error() -> None:
    body = {
        "code": 400,
        "message": "Invalid request",
        "data": {"error": "Missing required field: input.prompt"},
    }
    with pytest.raises(nb.APIError) as caught:
        DRIVERS["apixo"].parse_submit(_answer(400, body), nb.ImageRequest(prompt="x"))
    assert "Invalid request: Missing required field: input.prompt" in str(caught.value)


def test_the_detail_is_bounded() -> None:
    body = {"code": 400, "message": "Invalid request", "data": {"error": "x" * 5000}}
    with pytest.raises(nb.APIError) as caught:
        DRIVERS["apixo"].parse_submit(_answer(400, body), nb.ImageRequest(prompt="x"))
    assert len(caught.value.message) < 600


@pytest.mark.parametrize(
    ("provider", "status", "body"),
    [
        ("apixo", 400, {"code": 400, "message": "Invalid request", "data": {"error": "bad ratio"}}),
        ("crun", 200, {"code": 422, "message": "bad ratio", "data": None}),
    ],
)
def test_a_provider_refusing_the_request_is_an_invalid_request(
    provider: str, status: int, body: object
) -> None:
    """What validation let through and the provider refused (400, 422) is caught by
    ``except InvalidRequestError`` like a refusal before I/O, and is still an APIError with the
    provider's words; it pickles whole."""
    with pytest.raises(nb.RequestRejectedError) as caught:
        DRIVERS[provider].parse_submit(_answer(status, body), nb.ImageRequest(prompt="x"))
    error = caught.value
    assert isinstance(error, nb.InvalidRequestError)
    assert isinstance(error, nb.APIError)
    assert "bad ratio" in str(error)
    assert error.errors == (f"{provider}: {error.message} @ $",)
    again = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own bytes)
    assert (type(again), str(again), again.errors) == (type(error), str(error), error.errors)


# Request ids, status and the body on APIError (issue 23, item 4). No provider documents a
# request id, so each case feeds one of the common spellings through a driver's real parser.
@pytest.mark.parametrize(
    ("provider", "status", "body", "headers", "expected", "request_id"),
    [
        (  # no envelope; an HTTP 429 with the id in a header only
            "xingchao",
            429,
            {"error": "too many requests"},
            {"x-request-id": "9f1c-77aa", "retry-after": "3"},
            nb.RateLimitError,
            "9f1c-77aa",
        ),
        (  # crun refuses inside HTTP 200; the id in a body field
            "crun",
            200,
            {"code": 402, "message": "not enough credits", "data": None, "request_id": "cr-41"},
            {},
            nb.InsufficientCreditsError,
            "cr-41",
        ),
        (  # camelCase, as nanobananaapi writes its fields
            "nanobananaapi",
            401,
            {"code": 401, "msg": "invalid key", "requestId": "nba-0042"},
            {"request-id": "proxy-1"},
            nb.AuthenticationError,
            "nba-0042",
        ),
        (  # a trace id; the provider's body field wins over a proxy's header
            "apixo",
            503,
            {"code": 503, "message": "Service unavailable", "traceId": 7731, "data": None},
            {"x-trace-id": "lb-5"},
            nb.ProviderUnavailableError,
            "7731",
        ),
    ],
    ids=["xingchao", "crun", "nanobananaapi", "apixo"],
)
def test_each_providers_error_answer_carries_its_request_id_status_and_body(
    provider: str,
    status: int,
    body: dict[str, object],
    headers: dict[str, str],
    expected: type[nb.APIError],
    request_id: str,
) -> None:
    """A refused create names the provider's request id (for its support), the HTTP status and
    the start of the body, and ``str()`` shows the id; all of it pickles."""
    raw = json.dumps(body).encode()
    answer = HttpResponse(status=status, headers=headers, body=raw)
    with pytest.raises(expected) as caught:
        DRIVERS[provider].parse_submit(answer, nb.ImageRequest(prompt="x"))
    error = caught.value
    assert (error.request_id, error.status, error.body) == (request_id, status, raw.decode())
    assert f"request {request_id}" in str(error)
    assert str(error).startswith(f"{provider}")
    again = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own bytes)
    assert (again.request_id, again.body, str(again)) == (error.request_id, error.body, str(error))


def test_a_status_check_error_names_the_task_and_the_request() -> None:
    """A failed status check says which task and which request, in that order of use."""
    answer = HttpResponse(
        status=500,
        headers={"x-request-id": "req-abc"},
        body=b'{"code": 500, "message": "internal error", "data": null}',
    )
    ref = nb.TaskRef("apixo", "t-9", "nano-banana")
    with pytest.raises(nb.ProviderUnavailableError) as caught:
        DRIVERS["apixo"].parse_status(answer, ref)
    assert str(caught.value) == (
        "apixo: HTTP 500, code 500, request req-abc, task t-9: internal error"
    )


def test_crun_maintenance_refusal_keeps_the_request_id() -> None:
    """crun's 455 becomes ProviderRefusedError, which keeps the id and body it was read from."""
    body = b'{"code": 455, "message": "maintenance", "data": null}'
    answer = HttpResponse(status=200, headers={"x-request-id": "cr-455"}, body=body)
    with pytest.raises(nb.ProviderRefusedError) as caught:
        DRIVERS["crun"].parse_submit(answer, nb.ImageRequest(prompt="x"))
    assert (caught.value.request_id, caught.value.body) == ("cr-455", body.decode())


def test_f08_a_malformed_answer_keeps_a_bounded_body_and_the_request_id() -> None:
    """An HTML error page (F08): BadResponseError with the status, the header's request id and
    at most 512 bytes of the page."""
    page = b"<html><body>" + b"Bad gateway " * 400 + b"</body></html>"
    answer = HttpResponse(status=502, headers={"x-trace-id": "edge-12"}, body=page)
    with pytest.raises(nb.ProviderUnavailableError) as caught:
        DRIVERS["apixo"].parse_submit(answer, nb.ImageRequest(prompt="x"))
    error = caught.value
    assert (error.status, error.request_id) == (502, "edge-12")
    assert error.body.startswith("<html><body>Bad gateway")
    assert len(error.body.encode()) <= 512 + len("…".encode())
    assert error.body.endswith("…")
    with pytest.raises(nb.BadResponseError) as shape:
        DRIVERS["apixo"].parse_submit(
            HttpResponse(status=200, headers={"x-request-id": "r-2"}, body=page),
            nb.ImageRequest(prompt="x"),
        )
    assert (shape.value.request_id, shape.value.body) == ("r-2", error.body)


def test_an_answer_without_an_id_reads_as_before() -> None:
    """No id in the answer: ``request_id`` is None and the message has no ``request`` part."""
    answer = HttpResponse(status=401, body=b'{"code": 401, "message": "bad key"}')
    with pytest.raises(nb.AuthenticationError) as caught:
        DRIVERS["apixo"].parse_submit(answer, nb.ImageRequest(prompt="x"))
    assert caught.value.request_id is None
    assert str(caught.value) == "apixo: HTTP 401, code 401: bad key"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ok-1\nERROR forged log line", None),  # not printable: could forge a log line
        ("  padded  ", "padded"),
        ("x" * 300, "x" * 128),  # bounded
        (True, None),  # not an id
        ("", None),
    ],
    ids=["newline", "padded", "long", "bool", "empty"],
)
def test_only_a_printable_bounded_request_id_is_kept(value: object, expected: str | None) -> None:
    """A hostile or odd id never puts a line break or an unbounded text into a message."""
    body = json.dumps({"code": 429, "message": "slow down", "request_id": value}).encode()
    assert HttpResponse(status=429, body=body).request_id() == expected


async def test_an_account_wide_refusal_keeps_the_request_id_on_every_task(
    clock: FakeClock,
) -> None:
    """A 401 on a status check fails every task of the account at once; each task's error
    names its own task and the request id of the answer that refused."""

    def server(request: HttpRequest) -> HttpResponse:
        if request.kind == "submit":
            n = len(created)
            created.append(f"t{n}")
            return json_response({"code": 200, "message": "success", "data": {"taskId": f"t{n}"}})
        body = b'{"code": 401, "message": "key revoked"}'
        return HttpResponse(status=401, headers={"x-request-id": "rq-401"}, body=body)

    created: list[str] = []
    client, _ = scripted(clock, server)
    async with client:
        jobs = [asyncio.ensure_future(client.generate(p)) for p in ("a cat", "a dog")]
        await clock.run_until(lambda: all(j.done() for j in jobs))
    errors = [j.exception() for j in jobs]
    refused = [e for e in errors if isinstance(e, nb.AuthenticationError)]
    assert len(refused) == 2
    assert sorted((e.task_id, e.request_id) for e in refused) == [
        ("t0", "rq-401"),
        ("t1", "rq-401"),
    ]
