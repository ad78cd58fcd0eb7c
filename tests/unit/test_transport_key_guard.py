"""A transport the caller brings: the key it may echo is masked in every answer and error the
client hands on, exactly as with the built-in transport (no sockets)."""

from __future__ import annotations

import asyncio
import base64
import logging
import pickle
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

import nanobanana_async as nb
from nanobanana_async.testing import FakeClock, HttpRequest, HttpResponse, json_response
from tests.conftest import walk_exception
from tests.unit.test_redact import _key_pieces_decoded

Answer = Callable[[HttpRequest], HttpResponse]
CREATED = json_response({"code": 200, "message": "success", "data": {"taskId": "t1"}})


class OwnTransport:
    """A transport a user wrote, per the Transport protocol: ``answer`` returns or raises."""

    def __init__(self, answer: Answer) -> None:
        self._answer = answer
        self.sent: list[str] = []

    async def send(self, request: HttpRequest, *, timeout: float) -> HttpResponse:
        self.sent.append(request.kind)
        return self._answer(request)

    async def aclose(self) -> None:
        return None


def echo(status: int, key: str) -> HttpResponse:
    """A provider quoting the rejected key back in its error message."""
    return json_response({"code": status, "message": f"invalid key {key}", "data": None}, status)


def malformed(key: str) -> HttpResponse:
    """An HTML error page (not JSON) that quotes the key."""
    return HttpResponse(status=200, body=f"<html>invalid key {key}</html>".encode())


def raise_with_key(key: str) -> None:
    """What a careless HTTP library does when the network fails: the key in the message and
    in the cause."""
    try:
        raise OSError(f"proxy refused Authorization: Bearer {key}")
    except OSError as exc:
        raise ConnectionResetError(f"upstream rejected key {key}") from exc


def raise_bug_with_key(key: str) -> None:
    """A bug in the caller's transport, not a network failure, quoting the key."""
    try:
        raise KeyError(f"Bearer {key}")
    except KeyError as exc:
        raise RuntimeError(f"no header template for key {key}") from exc


def client(transport: OwnTransport, key: str, clock: FakeClock, **kwargs: object) -> nb.Client:
    return nb.Client(
        "apixo",
        api_key=key,
        transport=transport,
        clock=clock,
        random=lambda: 0.5,
        **kwargs,  # type: ignore[arg-type]  # each test passes options of the right type
    )


def texts(exc: BaseException) -> list[str]:
    """str and repr of every exception in the chain, and the whole traceback."""
    found = [text for link in walk_exception(exc) for text in (str(link), repr(link))]
    return [*found, "".join(traceback.format_exception(exc))]


def assert_masked(
    exc: BaseException, canary: str, caplog: pytest.LogCaptureFixture, survives: str
) -> None:
    seen = texts(exc)
    assert [text for text in seen if canary in text] == []
    # Only the key is cut: what the provider or library said around it still reads.
    assert any(survives in text for text in seen), seen
    logged = [caplog.text, *(r.getMessage() for r in caplog.records)]
    assert [text for text in logged if canary in text] == []


def assert_no_file_holds(path: Path, canary: str) -> None:
    files = [p for p in path.iterdir() if p.is_file()]
    assert files  # the journal was written
    assert [p.name for p in files if canary.encode() in p.read_bytes()] == []


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (lambda key: echo(401, key), nb.AuthenticationError),
        (lambda key: echo(400, key), nb.RequestRejectedError),
        (lambda key: echo(500, key), nb.SubmitOutcomeUnknownError),
        (malformed, nb.SubmitOutcomeUnknownError),
    ],
    ids=["401", "400", "500", "malformed"],
)
async def test_a_key_echoed_in_a_create_answer_is_masked(
    answer: Callable[[str], HttpResponse],
    expected: type[Exception],
    canary: str,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    """A refused or unreadable create that quotes the key: the error, its chain, the DEBUG log
    and the journal show ``***`` where the key was."""
    transport = OwnTransport(lambda request: answer(canary))
    with caplog.at_level(logging.DEBUG):
        async with client(transport, canary, clock, journal=tmp_path / "j.db") as c:
            with pytest.raises(expected) as info:
                await c.generate("a cat")
    assert_masked(info.value, canary, caplog, "invalid key ***")
    assert_no_file_holds(tmp_path, canary)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [(lambda key: echo(401, key), nb.AuthenticationError), (malformed, nb.BadResponseError)],
    ids=["401", "malformed"],
)
async def test_a_key_echoed_in_a_status_answer_is_masked(
    answer: Callable[[str], HttpResponse],
    expected: type[Exception],
    canary: str,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Status checks go through the same seam: the task's error never holds the key."""
    transport = OwnTransport(lambda r: CREATED if r.kind == "submit" else answer(canary))
    with caplog.at_level(logging.DEBUG):
        async with client(transport, canary, clock) as c:
            job = asyncio.ensure_future(c.generate("a cat"))
            await clock.run_until(job.done)
    assert transport.sent.count("status") >= 1
    with pytest.raises(expected) as info:
        job.result()
    assert_masked(info.value, canary, caplog, "invalid key ***")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [(lambda key: echo(500, key), nb.ProviderUnavailableError), (malformed, nb.BadResponseError)],
    ids=["500", "malformed"],
)
async def test_a_key_echoed_in_a_balance_answer_is_masked(
    answer: Callable[[str], HttpResponse],
    expected: type[Exception],
    canary: str,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The balance call, the third caller of the transport, is masked too."""
    with caplog.at_level(logging.DEBUG):
        async with client(OwnTransport(lambda r: answer(canary)), canary, clock) as c:
            with pytest.raises(expected) as info:
                await c.balance()
    assert_masked(info.value, canary, caplog, "invalid key ***")


async def test_a_network_failure_holding_the_key_becomes_a_masked_transport_error(
    canary: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A network failure whose message and cause quote the key reaches the caller as a
    TransportError (as the built-in transport maps aiohttp's) without the key anywhere."""

    def broken(request: HttpRequest) -> HttpResponse:
        raise_with_key(canary)
        raise AssertionError("unreachable")

    with caplog.at_level(logging.DEBUG):
        async with client(OwnTransport(broken), canary, clock) as c:
            with pytest.raises(nb.TransportError) as info:
                await c.balance()
    assert type(info.value) is nb.TransportError
    assert_masked(info.value, canary, caplog, "ConnectionResetError: upstream rejected key ***")


async def test_a_typed_transport_error_holding_the_key_keeps_its_type(
    canary: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A ConnectError (nothing sent, safe to retry) stays a ConnectError once masked."""

    def refused(request: HttpRequest) -> HttpResponse:
        try:
            raise OSError(f"refused for key {canary}")
        except OSError as exc:
            raise nb.ConnectError(f"could not connect with key {canary}") from exc

    with caplog.at_level(logging.DEBUG):
        async with client(OwnTransport(refused), canary, clock) as c:
            with pytest.raises(nb.ConnectError) as info:
                await c.balance()
    assert_masked(info.value, canary, caplog, "could not connect with key ***")


async def test_a_transport_exception_on_a_create_never_reaches_the_journal(
    canary: str, clock: FakeClock, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """The create's unknown outcome is journaled with its reason, and the reason is masked."""

    def broken(request: HttpRequest) -> HttpResponse:
        raise_with_key(canary)
        raise AssertionError("unreachable")

    with caplog.at_level(logging.DEBUG):
        async with client(OwnTransport(broken), canary, clock, journal=tmp_path / "j.db") as c:
            with pytest.raises(nb.SubmitOutcomeUnknownError) as info:
                await c.generate("a cat")
    assert_masked(info.value, canary, caplog, "upstream rejected key ***")
    assert_no_file_holds(tmp_path, canary)


async def test_a_transport_exception_on_a_status_check_is_checked_again(
    canary: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed status check is passing trouble, whatever the transport raised: the task is
    checked again and ends with its result, and no log line ever held the key."""
    failures = 0

    def flaky(request: HttpRequest) -> HttpResponse:
        nonlocal failures
        if request.kind == "submit":
            return CREATED
        if failures < 2:
            failures += 1
            raise_with_key(canary)
        return json_response(
            {
                "code": 200,
                "data": {
                    "taskId": "t1",
                    "state": "success",
                    "resultJson": '{"resultUrls": ["https://img.test/t1.png"]}',
                },
            }
        )

    with caplog.at_level(logging.DEBUG):
        async with client(OwnTransport(flaky), canary, clock) as c:
            job = asyncio.ensure_future(c.generate("a cat"))
            await clock.run_until(job.done)
    assert job.result().urls == ("https://img.test/t1.png",)
    assert failures == 2
    logged = [caplog.text, *(r.getMessage() for r in caplog.records)]
    assert [text for text in logged if canary in text] == []


async def test_a_transport_exception_without_the_key_stays_the_cause(
    canary: str, clock: FakeClock
) -> None:
    """Nothing to hide: the transport's own exception is kept as the cause, for debugging."""

    def broken(request: HttpRequest) -> HttpResponse:
        raise ConnectionResetError("socket closed by proxy")

    async with client(OwnTransport(broken), canary, clock) as c:
        with pytest.raises(nb.TransportError) as info:
            await c.balance()
    assert "ConnectionResetError: socket closed by proxy" in str(info.value)
    assert isinstance(info.value.__cause__, ConnectionResetError)


async def test_a_refused_connection_is_a_connect_error_and_creates_nothing(
    canary: str, clock: FakeClock
) -> None:
    """Refused or unresolvable: nothing was sent, so the create fails as ConnectError (its
    slot free again, safe to retry), never as an outcome unknown."""

    def refused(request: HttpRequest) -> HttpResponse:
        raise ConnectionRefusedError(f"connect to api failed, key {canary}")

    async with client(OwnTransport(refused), canary, clock) as c:
        job = asyncio.ensure_future(c.generate("a cat"))
        await clock.run_until(job.done)  # retried first: nothing was sent
        assert c.statistics().in_flight == 0
    error = job.exception()
    assert isinstance(error, nb.ConnectError)
    assert canary not in "".join(traceback.format_exception(error))


async def test_a_bug_in_the_transport_fails_fast_and_masked(
    canary: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception that is no network failure (a bug in the caller's transport) is raised
    as it is, not retried as passing trouble for the task's whole deadline; its copy quoting
    the key is masked, cause and all."""
    checks = 0

    def buggy(request: HttpRequest) -> HttpResponse:
        nonlocal checks
        if request.kind == "submit":
            return CREATED
        checks += 1
        raise_bug_with_key(canary)
        raise AssertionError("unreachable")

    with caplog.at_level(logging.DEBUG):
        async with client(OwnTransport(buggy), canary, clock) as c:
            job = asyncio.ensure_future(c.generate("a cat"))
            await clock.run_until(job.done)
            # The task may still run on the provider: its slot stays taken (the cap holds).
            assert c.statistics().in_flight == 1
    assert checks == 1
    error = job.exception()
    assert type(error) is RuntimeError
    assert_masked(error, canary, caplog, "no header template for key ***")


async def test_an_error_that_breaks_once_copied_is_replaced_without_its_chain(
    canary: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A subclass whose __str__ reads a slot a copy lacks: the copy cannot even be printed,
    so the masked text of the original replaces it, with nothing chained."""

    class ProxyError(nb.ConnectError):
        __slots__ = ("detail",)

        def __init__(self, detail: str) -> None:
            super().__init__("proxy refused")
            self.detail = detail

        def __str__(self) -> str:
            return f"proxy refused: {self.detail}"

    def failing(request: HttpRequest) -> HttpResponse:
        raise ProxyError(f"Proxy-Authorization: Bearer {canary}")

    with caplog.at_level(logging.DEBUG):
        async with client(OwnTransport(failing), canary, clock) as c:
            with pytest.raises(nb.TransportError) as info:
                await c.balance()
    assert_masked(info.value, canary, caplog, "proxy refused: Proxy-Authorization: Bearer ***")


@pytest.mark.parametrize(
    "spelled",
    [
        "nbk\\/Q29uZmlk+ZW50aWFs",  # PHP escapes "/"
        "nbk/Q29uZmlk\\u002BZW50aWFs",  # .NET's default encoder, upper-case hex
        "nbk\\u002fQ29uZmlk\\u002bZW50aWFs",  # every symbol as \\uXXXX
    ],
    ids=["slash", "upper-hex", "lower-hex"],
)
async def test_a_key_the_provider_escaped_in_json_is_masked(spelled: str, clock: FakeClock) -> None:
    """Bodies are masked before they are decoded, and decoding turns an escaped key back into
    the key: however a serializer escapes it, it never reaches the error."""
    key = "nbk/Q29uZmlk+ZW50aWFs"

    def rejecting(request: HttpRequest) -> HttpResponse:
        body = b'{"code": 401, "msg": "invalid key ' + spelled.encode() + b'"}'
        return HttpResponse(status=401, body=body)

    async with client(OwnTransport(rejecting), key, clock) as c:
        with pytest.raises(nb.AuthenticationError) as info:
            await c.balance()
    text = "".join(traceback.format_exception(info.value))
    assert key not in text
    assert spelled not in text
    assert "invalid key ***" in str(info.value)


async def test_a_typed_error_that_cannot_be_masked_is_replaced(
    canary: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An error showing the key from data no copy can mask becomes a plain, masked
    TransportError: the type is lost, the key is never shown."""

    class HeaderError(nb.TransportError):
        def __init__(self, headers: dict[str, str]) -> None:
            super().__init__("request failed")
            self.headers = headers

        def __str__(self) -> str:
            return f"request failed with headers {self.headers}"

    def failing(request: HttpRequest) -> HttpResponse:
        raise HeaderError({"Authorization": f"Bearer {canary}"})

    with caplog.at_level(logging.DEBUG):
        async with client(OwnTransport(failing), canary, clock) as c:
            with pytest.raises(nb.TransportError) as info:
                await c.balance()
    assert type(info.value) is nb.TransportError
    assert_masked(info.value, canary, caplog, "HeaderError: request failed with headers")


def test_a_guarded_transport_keeps_telling_its_endpoint() -> None:
    # Learned latencies are kept per endpoint: wrapping must not hide the caller's URL.
    from nanobanana_async._redact import Secret
    from nanobanana_async._transport import KeyGuard

    inner = OwnTransport(lambda request: json_response({}))
    assert KeyGuard(inner, Secret("sk-x")).base_url is None
    inner.base_url = "http://127.0.0.1:9/v1"  # type: ignore[attr-defined]
    assert KeyGuard(inner, Secret("sk-x")).base_url == "http://127.0.0.1:9/v1"


def _spellings(key: str) -> dict[str, str]:
    basic = base64.b64encode(f"apikey:{key}".encode()).decode()
    return {
        "inside a word": f"apikey_{key}_v2",
        "basic": f"Basic {basic}",
        "bearer": f"Bearer {base64.b64encode(key.encode()).decode()}",
    }


@pytest.mark.parametrize("spelling", ["inside a word", "basic", "bearer"])
async def test_a_key_echoed_next_to_word_characters_or_base64_is_masked(
    spelling: str,
    canary: str,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    """Issue 20, item 12d: a key of 8 characters or more echoed inside a word
    (``apikey_<KEY>_v2``) or base64-encoded is masked in the error, its chain, the log and
    the journal."""
    echoed = _spellings(canary)[spelling]
    answer = json_response({"code": 400, "message": f"invalid key {echoed}", "data": None}, 400)
    transport = OwnTransport(lambda request: answer)
    with caplog.at_level(logging.DEBUG):
        async with client(transport, canary, clock, journal=tmp_path / "j.db") as c:
            with pytest.raises(nb.RequestRejectedError) as info:
                await c.generate("a cat")
    assert_masked(info.value, canary, caplog, "invalid key")
    assert all(not _key_pieces_decoded(text) for text in texts(info.value))
    assert_no_file_holds(tmp_path, canary)


@pytest.mark.parametrize("header", ["x-request-id", "request-id", "x-trace-id"])
async def test_a_key_quoted_as_the_request_id_or_in_the_body_never_reaches_the_error(
    header: str, canary: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A provider that quotes the key in its body, in a request-id field and in a request-id
    header: ``.body``, ``.request_id``, ``str``/``repr`` of the whole chain and a pickled copy
    show ``***`` where the key was, the rest of the provider's words intact."""

    def rejecting(request: HttpRequest) -> HttpResponse:
        body = {"code": 401, "message": f"invalid key {canary}", "trace_id": canary}
        response = json_response(body, 401)
        return HttpResponse(status=401, headers={header: f"Bearer {canary}"}, body=response.body)

    with caplog.at_level(logging.DEBUG):
        async with client(OwnTransport(rejecting), canary, clock) as c:
            with pytest.raises(nb.AuthenticationError) as info:
                await c.balance()
    error = info.value
    assert error.request_id == "***"  # the body field, masked
    assert "invalid key ***" in error.body
    assert_masked(error, canary, caplog, "request ***")
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own bytes)
    assert [v for v in vars(copy).values() if canary in str(v)] == []

    def header_only(request: HttpRequest) -> HttpResponse:
        body = b'{"code": 401, "message": "invalid key"}'
        return HttpResponse(status=401, headers={header: f"Bearer {canary}"}, body=body)

    async with client(OwnTransport(header_only), canary, clock) as c:
        with pytest.raises(nb.AuthenticationError) as info:
            await c.balance()
    assert info.value.request_id == "Bearer ***"
    assert_masked(info.value, canary, caplog, "request Bearer ***")


async def test_a_key_in_a_request_id_header_of_any_mapping_never_reaches_the_error(
    canary: str, clock: FakeClock
) -> None:
    """Headers that are not a plain dict (a case-insensitive mapping, names in any case)
    skip the quick test for request-id headers: the key there is masked all the same."""
    headers = CIMultiDictProxy(CIMultiDict({"X-Request-Id": f"Bearer {canary}"}))

    def rejecting(request: HttpRequest) -> HttpResponse:
        return HttpResponse(status=401, headers=headers, body=b'{"code": 401}')

    async with client(OwnTransport(rejecting), canary, clock) as c:
        with pytest.raises(nb.AuthenticationError) as info:
            await c.balance()
    assert info.value.request_id == "Bearer ***"
    assert canary not in str(info.value)
    assert canary not in repr(info.value)


async def test_a_masked_request_id_header_leaves_no_copy_of_the_key_in_the_answer(
    canary: str,
) -> None:
    """The answer a caller's transport gave comes back from the guard with the key masked in
    every copy of the header, whatever the case of its name."""
    headers = CIMultiDictProxy(
        CIMultiDict({"X-Request-Id": f"Bearer {canary}", "Retry-After": "2"})
    )

    from nanobanana_async._redact import Secret
    from nanobanana_async._transport import KeyGuard

    def answering(request: HttpRequest) -> HttpResponse:
        return HttpResponse(status=200, headers=headers, body=b"{}")

    guarded = KeyGuard(OwnTransport(answering), Secret(canary))
    answer = await guarded.send(HttpRequest(method="GET", path="/x"), timeout=5.0)
    assert canary not in repr(dict(answer.headers))
    assert answer.headers.get("x-request-id") == "Bearer ***"
    assert answer.headers.get("retry-after") == "2"
