"""AiohttpTransport against a loopback aiohttp server: what is sent, what comes back, and how
each way of failing maps to this library's errors."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict

import nanobanana_async as nb
from nanobanana_async._http import HttpRequest
from nanobanana_async._redact import Secret
from nanobanana_async._transport import MAX_BODY, AiohttpTransport, auth_headers

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Server:
    """A loopback server whose one route a test sets, recording every request it reads."""

    def __init__(self) -> None:
        self.handler: Handler = self._ok
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        self.release = asyncio.Event()  # lets a handler that hangs finish at teardown
        self.url = ""

    async def _ok(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append((request.method, request.path_qs, dict(request.headers), body))
        return await self.handler(request)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", srv.dispatch)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    srv.url = f"http://127.0.0.1:{port}/api/v1"
    yield srv
    srv.release.set()
    await runner.cleanup()


def transport(url: str, key: str | None = "sk-test-key", **kwargs: object) -> AiohttpTransport:
    return AiohttpTransport(
        base_url=url,
        scheme="bearer",
        key=Secret(key) if key is not None else None,
        **kwargs,  # type: ignore[arg-type]
    )


GET = HttpRequest(method="GET", path="/status", params={"taskId": "t 1"}, kind="status")
POST = HttpRequest(method="POST", path="/create", json={"prompt": "a cat"}, kind="submit")


def test_auth_headers_per_scheme() -> None:
    """Bearer or x-api-key carries the raw key; no key, no header."""
    key = Secret("s3cret")
    assert auth_headers("bearer", key) == {"Authorization": "Bearer s3cret"}
    assert auth_headers("x-api-key", key) == {"x-api-key": "s3cret"}
    assert auth_headers("bearer", None) == {}


async def test_sends_method_path_params_body_and_key(server: Server) -> None:
    """The request goes to base URL + path with its query, JSON body and auth header."""
    t = transport(server.url + "/", wall_clock=lambda: 1234.5)
    try:
        get = await t.send(GET, timeout=5)
        post = await t.send(POST, timeout=5)
    finally:
        await t.aclose()
    (m1, url1, h1, b1), (m2, url2, h2, b2) = server.seen
    assert (m1, url1, b1) == ("GET", "/api/v1/status?taskId=t+1", b"")
    assert (m2, url2, b2) == ("POST", "/api/v1/create", b'{"prompt": "a cat"}')
    assert h1["Authorization"] == h2["Authorization"] == "Bearer sk-test-key"
    assert h2["Content-Type"] == "application/json"
    for response in (get, post):
        assert response.status == 200
        assert response.body == b'{"ok": true}'
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        assert response.received_at == 1234.5


async def test_error_statuses_and_redirects_come_back_as_answers(server: Server) -> None:
    """A 4xx/5xx is an answer for the driver to read, and a redirect is never followed (the
    key must not travel to another host)."""

    async def answer(request: web.Request) -> web.Response:
        if request.method == "GET":
            raise web.HTTPFound("http://127.0.0.2:1/elsewhere")
        return web.json_response({"code": 503}, status=503, headers={"Retry-After": "7"})

    server.handler = answer
    t = transport(server.url)
    try:
        redirect = await t.send(GET, timeout=5)
        unavailable = await t.send(POST, timeout=5)
    finally:
        await t.aclose()
    assert redirect.status == 302
    assert redirect.headers["location"] == "http://127.0.0.2:1/elsewhere"
    assert (unavailable.status, unavailable.headers["retry-after"]) == (503, "7")
    assert len(server.seen) == 2


async def test_a_key_echoed_in_the_body_is_masked(server: Server) -> None:
    """A provider quoting the key back gets it replaced by *** before anyone reads the body."""

    async def echo(request: web.Request) -> web.Response:
        echo = {"message": f"bad key {request.headers['Authorization']}"}
        return web.json_response(echo, status=401)

    server.handler = echo
    t = transport(server.url, key="sk-canary-123")
    try:
        response = await t.send(GET, timeout=5)
    finally:
        await t.aclose()
    assert response.body == b'{"message": "bad key Bearer ***"}'


async def test_a_key_echoed_in_a_request_id_header_is_masked(server: Server) -> None:
    """The request-id headers an error shows have the key replaced by *** (any spelling of the
    header name); other headers are left as sent."""

    async def echo(request: web.Request) -> web.Response:
        key = request.headers["Authorization"].removeprefix("Bearer ")
        headers = {"X-Request-ID": key, "X-Trace-Id": "t-1", "X-Other": "k"}
        return web.json_response({"message": "no"}, status=401, headers=headers)

    server.handler = echo
    t = transport(server.url, key="sk-canary-123")
    try:
        response = await t.send(GET, timeout=5)
    finally:
        await t.aclose()
    assert (response.headers["x-request-id"], response.headers["x-trace-id"]) == ("***", "t-1")
    assert response.request_id() == "***"


async def test_a_huge_body_is_cut_at_the_cap(server: Server) -> None:
    """The transport never holds more than MAX_BODY + 1 bytes of an answer."""

    async def huge(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * (MAX_BODY + 4096))

    server.handler = huge
    t = transport(server.url)
    try:
        response = await t.send(GET, timeout=10)
    finally:
        await t.aclose()
    assert len(response.body) == MAX_BODY + 1


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_body_in_several_writes_is_read_whole(server: Server, chunked: bool) -> None:
    """An answer that arrives in pieces (Content-Length or chunked) is read to its end."""
    body = b'{"code": 200, "data": {"taskId": "abc"}, "pad": "' + b"p" * 70_000 + b'"}'

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        if not chunked:
            response.content_length = len(body)
        await response.prepare(request)
        for piece in (body[:10], body[10:40_000], body[40_000:]):
            await response.write(piece)
            await asyncio.sleep(0.01)  # separate TCP writes, read separately
        await response.write_eof()
        return response

    server.handler = trickle
    t = transport(server.url)
    try:
        response = await t.send(GET, timeout=5)
    finally:
        await t.aclose()
    assert response.body == body


async def test_refused_connection_is_connect_error() -> None:
    """Nothing listening: ConnectError, the one failure where nothing was sent."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    t = transport(url)
    try:
        with pytest.raises(nb.ConnectError):
            await t.send(POST, timeout=5)
    finally:
        await t.aclose()


async def test_no_answer_in_time_is_request_timeout(server: Server) -> None:
    """A server that never answers: RequestTimeoutError (a TimeoutError) after ``timeout``."""

    async def hang(request: web.Request) -> web.Response:
        await server.release.wait()
        return web.Response()

    server.handler = hang
    t = transport(server.url)
    try:
        with pytest.raises(nb.RequestTimeoutError) as info:
            await t.send(POST, timeout=0.05)
    finally:
        await t.aclose()
    assert isinstance(info.value, TimeoutError)
    assert len(server.seen) == 1  # it was sent: the outcome is unknown, not "not sent"


async def test_reset_after_sending_is_transport_error_not_connect_error(server: Server) -> None:
    """The connection dropped after the request was read: TransportError, never ConnectError
    (which would tell the client a retry is safe)."""

    async def drop(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    server.handler = drop
    t = transport(server.url, key="sk-canary-123")
    try:
        with pytest.raises(nb.TransportError) as info:
            await t.send(POST, timeout=5)
    finally:
        await t.aclose()
    assert not isinstance(info.value, nb.ConnectError | nb.RequestTimeoutError)
    # aiohttp's exception can carry the headers: not even as the implicit context.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None
    assert "sk-canary-123" not in str(info.value)


async def test_one_send_is_one_request_on_a_reused_connection(server: Server) -> None:
    """A GET on a kept-alive connection the server drops is not silently sent again: the
    provider would count the resend, the client's limiter would not."""

    async def drop_second(request: web.Request) -> web.Response:
        if len(server.seen) == 2:
            assert request.transport is not None
            request.transport.close()
        return web.json_response({"ok": True})

    server.handler = drop_second
    t = transport(server.url)
    try:
        assert (await t.send(GET, timeout=5)).status == 200
        with pytest.raises(nb.TransportError):
            await t.send(GET, timeout=5)
    finally:
        await t.aclose()
    assert len(server.seen) == 2


async def test_aclose_closes_only_a_session_it_created(server: Server) -> None:
    """Its own session is closed by aclose; a caller's session is used and left open."""
    own = transport(server.url)
    await own.send(GET, timeout=5)
    session = own._session
    assert session is not None
    await own.aclose()
    assert session.closed

    async with aiohttp.ClientSession() as mine:
        shared = transport(server.url, session=mine)
        await shared.send(GET, timeout=5)
        await shared.aclose()
        assert not mine.closed
        await shared.send(GET, timeout=5)  # still usable by the caller and by us
    assert len(server.seen) == 3


def test_repr_shows_the_url_not_the_key() -> None:
    """The repr names the base URL only."""
    t = transport("http://127.0.0.1:9/api/", key="sk-canary-123")
    assert repr(t) == "AiohttpTransport(base_url='http://127.0.0.1:9/api')"


async def test_a_404_names_the_method_and_url_and_hints_at_the_base_url(
    server: Server, canary: str
) -> None:
    """A base URL without the provider's /api/v1: the APIError names the method and URL asked
    (no query, no key) and says to check base_url, instead of a bare "HTTP 404: Not Found"."""

    async def prefixed(request: web.Request) -> web.Response:
        if request.path.startswith("/api/v1/"):
            return web.json_response({"ok": True})
        raise web.HTTPNotFound

    server.handler = prefixed
    root = server.url.removesuffix("/api/v1")
    async with nb.Client("apixo", api_key=canary, base_url=root) as client:
        with pytest.raises(nb.APIError) as caught:
            await client.submit(nb.ImageRequest(prompt="a cat"))
    error = caught.value
    assert error.status == 404
    assert error.request_line == f"POST {root}/generateTask/nano-banana-2"
    assert f"POST {root}/generateTask/nano-banana-2" in str(error)
    assert "check base_url" in str(error)
    assert canary not in str(error)
    assert canary not in repr(error)
    # A status check's query (the task id, or a token some URL carries) is left out.
    t = transport(root, key=canary)
    try:
        missing = await t.send(GET, timeout=5)
        found = await t.send(HttpRequest(method="GET", path="/api/v1/x", kind="status"), timeout=5)
    finally:
        await t.aclose()
    assert missing.request_line == f"GET {root}/status"
    assert found.request_line == ""  # only a 404/405 pays for naming its URL


async def test_a_send_on_a_session_closed_under_it_is_client_closed_error(
    server: Server,
) -> None:
    """A send that starts once its session was closed (the client closing, or a caller's
    session closed under it) raises ClientClosedError, nothing chained, nothing sent: not
    aiohttp's bare RuntimeError, which a check logged as an unexpected error with a traceback."""
    session = aiohttp.ClientSession()
    t = transport(server.url, session=session)
    await session.close()
    for request in (GET, POST):
        with pytest.raises(nb.ClientClosedError) as raised:
            await t.send(request, timeout=5)
        assert raised.value.__cause__ is None
        assert raised.value.__context__ is None
        assert "nothing was sent" in str(raised.value)
    assert server.seen == []


@pytest.mark.parametrize("used", [True, False], ids=["used", "never-used"])
async def test_a_send_after_aclose_is_client_closed_error_and_opens_no_session(
    server: Server, used: bool
) -> None:
    """Once aclose() closed the session the transport made, a send raises ClientClosedError
    and sends nothing: it used to open a new session that nobody would close."""
    t = transport(server.url)
    if used:
        await t.send(GET, timeout=5)
    await t.aclose()
    for request in (GET, POST):
        with pytest.raises(nb.ClientClosedError) as raised:
            await t.send(request, timeout=5)
        assert raised.value.__context__ is None
        assert "nothing was sent" in str(raised.value)
    assert t._session is None
    assert len(server.seen) == (1 if used else 0)


async def test_answer_headers_read_lower_cased_with_a_repeated_request_id_masked(
    server: Server,
) -> None:
    """Answer headers read as a plain mapping with lower-cased names (copied from aiohttp's on
    first read): a repeated name keeps its last value, and a key in any of a repeated
    request-id header's values never reaches the response, its repr or its request id."""

    async def echo(request: web.Request) -> web.Response:
        key = request.headers["Authorization"].removeprefix("Bearer ")
        headers = CIMultiDict(
            [("X-Request-Id", "r-1"), ("x-request-id", f"id {key}"), ("Retry-After", "3")]
        )
        return web.json_response({"message": "no"}, status=429, headers=headers)

    server.handler = echo
    t = transport(server.url, key="sk-canary-123")
    try:
        response = await t.send(GET, timeout=5)
    finally:
        await t.aclose()
    headers = response.headers
    assert headers["x-request-id"] == "id ***"
    assert headers.get("retry-after") == "3"
    assert headers.get("Retry-After") is None  # names are lower-cased, as documented
    assert "content-type" in set(headers)
    assert dict(headers) == {k: headers[k] for k in headers}
    assert len(headers) == len(dict(headers))
    assert "sk-canary-123" not in repr(response) + str(response.request_id())
