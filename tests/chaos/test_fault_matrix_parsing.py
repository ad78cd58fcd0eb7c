"""Fault matrix rows F32 (pathological JSON) and F33 (the key through exception chains on
malformed HTTP): untrusted bytes become typed errors that keep what is known and no secret."""

from __future__ import annotations

import asyncio
import json
import traceback
from collections.abc import AsyncIterator

import pytest

import nanobanana_async as nb
from nanobanana_async._redact import Secret
from nanobanana_async._transport import AiohttpTransport
from nanobanana_async.providers import DRIVERS
from nanobanana_async.testing import FakeClock, HttpRequest, HttpResponse
from tests.chaos.test_fault_matrix import scripted
from tests.conftest import walk_exception
from tests.fakeapi import FakeApixo

DEEP = b'{"code": 200, "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def deep_answer() -> HttpResponse:
    return HttpResponse(status=200, headers={}, body=DEEP)


@pytest.mark.parametrize("provider", sorted(DRIVERS))
def test_f32_deep_nesting_is_a_bad_response(provider: str) -> None:
    """F32: JSON nested 10^5 deep is a BadResponseError, never a RecursionError."""
    ref = nb.TaskRef(provider, "t1", "nano-banana-2")
    with pytest.raises(nb.BadResponseError):
        DRIVERS[provider].parse_status(HttpResponse(status=200, headers={}, body=DEEP), ref)


def test_f32_a_huge_number_in_a_duration_is_a_bad_response() -> None:
    """F32: 1e400 in apixo's costTime is a BadResponseError, never an OverflowError."""
    result = json.dumps({"resultUrls": ["https://img.test/a.png"]})
    data = {"taskId": "t1", "state": "success", "costTime": 1, "resultJson": result}
    body = json.dumps({"code": 200, "message": "success", "data": data})
    body = body.replace('"costTime": 1', '"costTime": 1e400')
    ref = nb.TaskRef("apixo", "t1", "nano-banana-2")
    with pytest.raises(nb.BadResponseError):
        DRIVERS["apixo"].parse_status(HttpResponse(status=200, headers={}, body=body.encode()), ref)


HUGE = "1" + "0" * 400  # an integer no float holds (and past int()'s digit limit at 5,000)
NUMBERS_NO_FIELD_HOLDS = {
    "a code of digits that is no integer": b'{"code": "--5", "message": "x", "data": null}',
    "a code of 5,000 digits": b'{"code": "' + b"1" * 5000 + b'", "data": null}',
    "apixo costTime beyond a float": (
        b'{"code": 200, "data": {"taskId": "t1", "state": "processing", "costTime": '
        + HUGE.encode()
        + b"}}"
    ),
}


@pytest.mark.parametrize("body", NUMBERS_NO_FIELD_HOLDS.values(), ids=NUMBERS_NO_FIELD_HOLDS)
def test_f32_numbers_no_field_holds_are_a_bad_response(body: bytes) -> None:
    """F32: a number no field can hold (digits int() refuses, an integer past a float's
    range) is a BadResponseError, never a ValueError or an OverflowError."""
    ref = nb.TaskRef("apixo", "t1", "nano-banana-2")
    with pytest.raises(nb.BadResponseError):
        DRIVERS["apixo"].parse_status(HttpResponse(status=200, headers={}, body=body), ref)


def test_f32_an_integer_past_a_float_in_a_duration_or_a_balance_is_a_bad_response() -> None:
    """F32: crun's float duration and a balance holding an integer past a float's range."""
    crun = DRIVERS["crun"]
    status = '{"code": 200, "data": {"task_id": "t1", "status": "running", "duration_s": %s}}'
    ref = nb.TaskRef("crun", "t1", "google/nano-banana")
    answer = HttpResponse(status=200, headers={}, body=(status % HUGE).encode())
    with pytest.raises(nb.BadResponseError):
        crun.parse_status(answer, ref)
    balance = HttpResponse(
        status=200, headers={}, body=b'{"code": 200, "data": %b}' % HUGE.encode()
    )
    with pytest.raises(nb.BadResponseError):
        DRIVERS["apixo"].parse_balance(balance)


async def test_f32_a_mistyped_code_on_checks_is_retried_then_fails_with_the_id(
    clock: FakeClock,
) -> None:
    """F32: a status answer whose code is digits int() refuses counts as a malformed answer
    (checked again, up to max_bad_responses), not an unexpected error that ends the task."""
    server = FakeApixo(clock, latency=lambda i: 1000.0)
    bad = NUMBERS_NO_FIELD_HOLDS["a code of digits that is no integer"]
    server.hook = lambda r: (
        HttpResponse(status=200, headers={}, body=bad) if r.kind == "status" else None
    )
    client, _ = scripted(clock, server, retry=nb.RetryPolicy(max_bad_responses=3))
    async with client:
        job = asyncio.ensure_future(client.generate("a cat"))
        await clock.run_until(job.done, limit=600)
    error = job.exception()
    assert isinstance(error, nb.BadResponseError)
    assert error.task_id == "t0"
    assert server.count("status") == 3


async def test_f32_a_mistyped_code_on_a_create_is_an_unknown_outcome(clock: FakeClock) -> None:
    """F32: a create answered with a code int() refuses may have been accepted."""
    server = FakeApixo(clock)
    bad = NUMBERS_NO_FIELD_HOLDS["a code of digits that is no integer"]
    server.hook = lambda r: (
        HttpResponse(status=200, headers={}, body=bad) if r.kind == "submit" else None
    )
    client, _ = scripted(clock, server)
    async with client:
        with pytest.raises(nb.SubmitOutcomeUnknownError):
            await client.generate("a cat")


async def test_f32_deep_status_answers_fail_the_task_with_its_id(clock: FakeClock) -> None:
    """F32: a task whose checks keep answering pathological JSON fails with its id."""
    server = FakeApixo(clock, latency=lambda i: 5.0)
    server.hook = lambda r: (
        HttpResponse(status=200, headers={}, body=DEEP) if r.kind == "status" else None
    )
    client, _ = scripted(clock, server)
    async with client:
        job = asyncio.ensure_future(client.generate("a cat"))
        await clock.run_until(job.done)
    error = job.exception()
    assert isinstance(error, nb.BadResponseError)
    assert error.task_id == "t0"


async def test_f32_a_deep_create_answer_is_an_unknown_outcome(clock: FakeClock) -> None:
    """F32: a create answered with pathological JSON may have been accepted: outcome unknown,
    carrying the request, never a RecursionError."""
    server = FakeApixo(clock)
    server.hook = lambda r: (
        HttpResponse(status=200, headers={}, body=DEEP) if r.kind == "submit" else None
    )
    client, _ = scripted(clock, server)
    async with client:
        with pytest.raises(nb.SubmitOutcomeUnknownError) as info:
            await client.generate("a cat")
    assert info.value.request is not None
    assert info.value.request.prompt == "a cat"


BROKEN_ANSWERS = {
    "malformed status line": b"HTTP/1.1 2OO OK {auth}\r\nContent-Length: 2\r\n\r\n{{}}",
    "bad header": b"HTTP/1.1 200 OK\r\nX-Echo: {auth}\r\nContent-Length: abc\r\n\r\n{{}}",
    "bad chunking": (
        b"HTTP/1.1 200 OK\r\nX-Echo: {auth}\r\nTransfer-Encoding: chunked\r\n\r\nZZ {auth}\r\n"
    ),
    "over-long header": b"HTTP/1.1 200 OK\r\nX-Echo: {auth}" + b"a" * 70_000 + b"\r\n\r\n{{}}",
}


@pytest.fixture
async def echo_server(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A raw HTTP server on 127.0.0.1 that answers with a broken response quoting the
    request's Authorization header back."""
    template: bytes = request.param

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        auth = b""
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"authorization:") or line.lower().startswith(b"x-api-key:"):
                auth = line.split(b":", 1)[1].strip()
        writer.write(template.replace(b"{auth}", auth).replace(b"{{}}", b"{}"))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    "echo_server", list(BROKEN_ANSWERS.values()), ids=list(BROKEN_ANSWERS), indirect=True
)
async def test_f33_the_key_is_absent_from_the_whole_error_chain(
    echo_server: str, canary: str
) -> None:
    """F33: whatever a broken answer does with the request (here it quotes the key back), the
    canary is absent from str and repr of every exception in the chain and from the traceback."""
    driver = DRIVERS["apixo"]
    transport = AiohttpTransport(
        base_url=echo_server, scheme=driver.auth_scheme, key=Secret(canary)
    )
    try:
        with pytest.raises(nb.NanoBananaError) as info:
            await transport.send(HttpRequest(method="GET", path="/x", kind="status"), timeout=5.0)
    finally:
        await transport.aclose()
    for error in walk_exception(info.value):
        assert canary not in str(error)
        assert canary not in repr(error)
    assert canary not in "".join(traceback.format_exception(info.value))
