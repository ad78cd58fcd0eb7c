"""The HTTP transport: sends HttpRequest values with aiohttp and maps every aiohttp failure to
this library's errors (does I/O)."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Final, Protocol

import aiohttp
import attrs
import yarl

from ._errors import (
    ClientClosedError,
    ConnectError,
    NanoBananaError,
    RequestTimeoutError,
    TransportError,
)
from ._http import REQUEST_ID_HEADERS, HttpRequest, HttpResponse
from ._redact import Secret, in_exception, masked_copy
from .providers._base import AuthScheme

_log = logging.getLogger("nanobanana_async.transport")

MAX_BODY: Final = 4 * 1024 * 1024  # status answers are small; a larger body is not ours
_POOL_SIZE: Final = 256
# Statuses whose error names the URL asked: most often a base URL without its path prefix.
_NO_SUCH_PATH: Final = frozenset({404, 405})
_TIMEOUTS_KEPT: Final = 8  # distinct request timeouts whose ClientTimeout is kept


class Transport(Protocol):
    """Sends one request and returns the complete response, or raises a TransportError."""

    async def send(self, request: HttpRequest, *, timeout: float) -> HttpResponse:
        """Send ``request``; ``timeout`` bounds the whole exchange in seconds."""
        ...

    async def aclose(self) -> None:
        """Release connections the transport owns."""
        ...


def auth_headers(scheme: AuthScheme, key: Secret | None) -> dict[str, str]:
    """The authentication header; the one place an API key's raw value is read."""
    if key is None:
        return {}
    if scheme == "x-api-key":
        return {"x-api-key": key.reveal()}
    return {"Authorization": f"Bearer {key.reveal()}"}


class AiohttpTransport:
    """A Transport over an aiohttp ClientSession.

    Args:
        base_url: prefix for every request's path (scheme, host and path prefix).
        scheme: how the key is sent.
        key: the API key, or None to send no authentication.
        session: a caller-owned session (never closed here); None creates one on first use.
        connect_timeout: seconds to establish a connection.
        wall_clock: stamps each answer's arrival (for HTTP-date Retry-After).
    """

    def __init__(
        self,
        *,
        base_url: str,
        scheme: AuthScheme,
        key: Secret | None,
        session: aiohttp.ClientSession | None = None,
        connect_timeout: float = 10.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._headers = auth_headers(scheme, key)
        self._key = key
        self._session = session
        self._owns_session = session is None
        self._connect_timeout = connect_timeout
        self._wall_clock = wall_clock
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        # Set by aclose() on an owned session: a later send would otherwise open a new
        # session that nobody closes.
        self._closed = False

    def __repr__(self) -> str:
        return f"AiohttpTransport(base_url={self._base_url!r})"

    def masks(self, key: Secret) -> bool:
        """Whether this transport already masks ``key`` in what it returns and raises."""
        return self._key == key

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ClientClosedError("the transport is closed; nothing was sent")
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=_POOL_SIZE)
            self._session = aiohttp.ClientSession(connector=connector)
            # aiohttp silently resends a GET once after a dropped keep-alive connection, which
            # the provider counts against the rate limit but our limiter never sees.
            # Turning it off keeps "one send == one request" exact on sessions we own.
            if hasattr(self._session, "_retry_connection"):
                self._session._retry_connection = False
        return self._session

    async def send(self, request: HttpRequest, *, timeout: float) -> HttpResponse:
        """Send ``request`` and read the whole body.

        Raises:
            ConnectError: no connection could be made; nothing was sent.
            RequestTimeoutError: no complete answer within ``timeout``.
            TransportError: the connection broke after sending (the outcome is unknown).
            ClientClosedError: this transport or its session was closed (the client closing,
                or a caller-owned session closed under it); nothing was sent.
        """
        session = self._get_session()
        url = self._base_url + request.path
        client_timeout = self._timeouts.get(timeout)
        if client_timeout is None:
            # Every request of a client has the same timeout: build its value once.
            client_timeout = aiohttp.ClientTimeout(
                total=timeout, connect=min(self._connect_timeout, timeout)
            )
            if len(self._timeouts) < _TIMEOUTS_KEPT:
                self._timeouts[timeout] = client_timeout
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("%s %s %s", request.method, request.path, request.kind)
        try:
            async with session.request(
                request.method,
                url,
                params=request.params or None,
                json=request.json if request.method == "POST" else None,
                headers=self._headers,
                timeout=client_timeout,
                allow_redirects=False,
            ) as resp:
                # read(n) returns what is buffered, so a body that came in several TCP
                # writes needs more than one read.
                body = await resp.content.read(MAX_BODY + 1)
                while len(body) <= MAX_BODY and not resp.content.at_eof():
                    more = await resp.content.read(MAX_BODY + 1 - len(body))
                    if not more:
                        break
                    body += more
                if self._key is not None:
                    # Some providers quote a rejected key back in their error message.
                    body = self._key.redact_bytes(body)
                raw = resp.headers
                headers: Mapping[str, str] = _Headers(raw)
                if self._key is not None:
                    for name in REQUEST_ID_HEADERS:
                        # aiohttp's headers match names in any case. Most answers carry no
                        # request id: a test in C each, and the copy is made only for one
                        # that does (masked in the copy: a repeated name keeps its last value).
                        if name in raw:
                            headers = _mask_shown_headers(self._key, headers) or headers
                            break
                status = resp.status
        except (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError) as exc:
            error: NanoBananaError = ConnectError(self._describe("could not connect", exc))
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            error = RequestTimeoutError(self._describe("timed out", exc))
        except aiohttp.ClientError as exc:
            error = TransportError(self._describe("connection failed", exc))
        except RuntimeError:
            # aiohttp refuses a request on a closed session with a bare RuntimeError before
            # sending anything: a send that starts as the client closes. Any other
            # RuntimeError is a bug and goes up as it is.
            if not session.closed:
                raise
            error = ClientClosedError("the HTTP session is closed; nothing was sent")
        else:
            if status in _NO_SUCH_PATH:
                return HttpResponse(
                    status=status,
                    headers=headers,
                    body=body,
                    received_at=self._wall_clock(),
                    request_line=self._request_line(request.method, url),
                )
            return HttpResponse(
                status=status, headers=headers, body=body, received_at=self._wall_clock()
            )
        # Raised outside the except block, so not even __context__ holds aiohttp's exception,
        # whose repr carries the request headers (the key).
        raise error

    def _request_line(self, method: str, url: str) -> str:
        # Only on a 404/405 (a base URL missing its /api/v1, a typo): the common answer pays
        # nothing. No query (it may carry tokens), no user info, the key masked.
        shown = str(yarl.URL(url).with_user(None).with_query(None).with_fragment(None))
        if self._key is not None:
            shown = self._key.redact(shown)
        return f"{method} {shown}"

    def _describe(self, what: str, exc: BaseException) -> str:
        # aiohttp's reprs can carry request headers (the key); use the type and redacted text.
        text = str(exc)
        if self._key is not None:
            text = self._key.redact(text)
        return f"{what}: {type(exc).__name__}: {text[:200]}"

    async def aclose(self) -> None:
        """Close the session if this transport created it; every later ``send`` then raises
        ``ClientClosedError``. A caller's session stays open and usable through it."""
        if self._owns_session:
            self._closed = True
            if self._session is not None:
                await self._session.close()
                self._session = None


_SHOWN_HEADERS: Final = frozenset(REQUEST_ID_HEADERS)


class _Headers(Mapping[str, str]):
    """An answer's headers, keys lower-cased (as ``HttpResponse`` says), copied out of
    aiohttp's on the first read: most answers are never read for one (only a 429's
    Retry-After and an error's request id are), and the copy was a call per header."""

    __slots__ = ("_lowered", "_raw")

    def __init__(self, raw: Mapping[str, str]) -> None:
        self._raw = raw
        self._lowered: dict[str, str] | None = None

    def _copy(self) -> dict[str, str]:
        lowered = self._lowered
        if lowered is None:
            # The same copy as ever, so repeated names keep the last value, as they did.
            lowered = self._lowered = {k.lower(): v for k, v in self._raw.items()}
        return lowered

    def __getitem__(self, name: str) -> str:
        return self._copy()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._copy())

    def __len__(self) -> int:
        return len(self._copy())

    def __repr__(self) -> str:
        return repr(self._copy())


def _mask_shown_headers(key: Secret, headers: Mapping[str, str]) -> dict[str, str] | None:
    """``headers`` with ``key`` masked in those an error shows (the request id ones), or None
    when none of them holds it. The others are read (Retry-After), never shown."""
    if type(headers) is dict and _SHOWN_HEADERS.isdisjoint(headers):
        # Most answers carry none of them: one test in C, not a lookup each. Only for a plain
        # dict: another mapping may match names in any case, as its get() does below.
        return None
    masked: dict[str, str] | None = None
    for name in REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value is not None and key.appears_in(value):
            if masked is None:
                # Names lower-cased as the built-in transport keeps them: a copy keyed as the
                # caller's mapping had them ("X-Request-Id") would keep the key beside the mask.
                masked = {k.lower(): v for k, v in headers.items()}
            masked[name] = key.redact_token(value)
    return masked


def endpoint(transport: Transport, configured: str) -> str:
    """Where ``transport`` sends: its own base URL when it tells one (the ``local``
    simulator's port is known only once it started), else ``configured``."""
    url = getattr(transport, "base_url", None)
    return url if isinstance(url, str) and url else configured


def guard(transport: Transport, key: Secret | None) -> Transport:
    """``transport`` as the client sends through it: wrapped in a :class:`KeyGuard` unless it
    masks ``key`` itself (the built-in transport does, at the source) or there is no key."""
    if key is None or (type(transport) is AiohttpTransport and transport.masks(key)):
        return transport
    return KeyGuard(transport, key)


class KeyGuard:
    """Masks the API key in every answer and error of a transport the package did not build.

    Every create, status check and balance call goes through here, so a caller's own
    transport cannot bring the key into an error message, a log line or the journal: a
    provider may quote a rejected key back ("invalid key sk-…"), and an HTTP library's
    exception may carry the request headers.

    Answers: the key is replaced by ``***`` in the body and in the request-id headers an error
    shows (the others are read only for Retry-After, never shown). Errors: a network failure
    (``OSError``, ``TimeoutError``, aiohttp's ``ClientError``) becomes this library's, as the
    built-in transport maps aiohttp's: ``ConnectError`` when no connection was made (nothing
    sent), ``RequestTimeoutError``, else ``TransportError`` (the request may have been sent).
    Any other exception (a bug in the transport) is raised as it is, so it fails fast. One that
    quotes the key is replaced by a masked copy of the same type with nothing chained, or, when
    the key cannot be masked out of it, by its masked text alone (a ``TransportError`` for this
    library's errors, a ``RuntimeError`` for others).
    """

    __slots__ = ("_inner", "_key")

    def __init__(self, inner: Transport, key: Secret) -> None:
        self._inner = inner
        self._key = key

    @property
    def base_url(self) -> str | None:
        """The inner transport's base URL, when it tells one (the ``local`` simulator's port
        is known only once it started): learned latencies are kept per endpoint."""
        url = getattr(self._inner, "base_url", None)
        return url if isinstance(url, str) else None

    def __repr__(self) -> str:
        # Not the inner repr: the caller's transport may show its headers there.
        return f"KeyGuard({type(self._inner).__name__})"

    async def send(self, request: HttpRequest, *, timeout: float) -> HttpResponse:
        """Send through the inner transport; mask the key in what comes back.

        Raises:
            ConnectError: no connection could be made; nothing was sent.
            RequestTimeoutError: no complete answer within ``timeout``.
            TransportError: the connection failed after sending (the outcome is unknown).
            Exception: the inner transport's own error of any other kind, as it is (masked).
        """
        try:
            response = await self._inner.send(request, timeout=timeout)
        except Exception as exc:
            error, chained = self._sanitize(exc)
            if error is exc:
                raise
            cause = exc if chained else None
        else:
            body = response.body
            masked = self._key.redact_bytes(body)  # the body itself when the key is not in it
            if masked is not body:
                response = attrs.evolve(response, body=masked)
            headers = _mask_shown_headers(self._key, response.headers)
            if headers is not None:
                response = attrs.evolve(response, headers=headers)
            return response
        # Raised outside the except block, so not even __context__ holds an exception that
        # quotes the key.
        raise error from cause

    def _sanitize(self, exc: Exception) -> tuple[Exception, bool]:
        # What to raise for ``exc``, and whether it may keep ``exc`` as its cause.
        leaks = self._leaks(exc)
        if not isinstance(exc, NanoBananaError) and _is_network(exc):
            return self._translate(exc), not leaks
        if not leaks:
            return exc, False
        try:
            copy = masked_copy(self._key, exc)
            if not self._leaks(copy):
                return copy, False
        except Exception:  # noqa: S110 - a copy that cannot be made is replaced below
            pass
        # The key sits deeper than a message or an attribute can be masked (a custom
        # __str__ over nested data): the masked text alone.
        if isinstance(exc, NanoBananaError):
            return self._translate(exc), False
        return RuntimeError(self._text(exc)), False

    def _leaks(self, exc: BaseException) -> bool:
        try:
            return in_exception(self._key, exc)
        except Exception:
            return True  # an exception that cannot even be printed is not trusted

    def _text(self, exc: BaseException) -> str:
        try:
            text = str(exc)
        except Exception:
            text = ""
        # Masked before the cut, so a cut never leaves part of the key.
        return f"{type(exc).__name__}: {self._key.redact_token(text)[:200]}"

    def _translate(self, exc: Exception) -> TransportError:
        name = type(self._inner).__name__
        if isinstance(exc, TimeoutError):
            return RequestTimeoutError(f"{name} timed out: {self._text(exc)}")
        if isinstance(exc, _NOT_CONNECTED):
            return ConnectError(f"{name} could not connect: {self._text(exc)}")
        return TransportError(f"{name} failed: {self._text(exc)}")

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self._inner.aclose()


# Failures that mean no connection was made, so the request was not sent.
_NOT_CONNECTED: Final = (ConnectionRefusedError, socket.gaierror, aiohttp.ClientConnectorError)


def _is_network(exc: Exception) -> bool:
    return isinstance(exc, OSError | TimeoutError | aiohttp.ClientError)
