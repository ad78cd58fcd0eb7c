"""HTTP requests and responses as plain values, so drivers never see aiohttp (no I/O)."""

from __future__ import annotations

import json
import json.scanner
from collections.abc import Mapping
from typing import Final, Literal

import attrs

from ._errors import BadResponseError, snippet

JSONValue = object
"""Decoded JSON: dicts, lists, strings, numbers, booleans and None."""


_DECODER: Final = json.JSONDecoder()
# What raw_decode calls: (text, index) -> (value, end), StopIteration when no value starts there.
# The ignore: typeshed wants a scanner as the argument; json.decoder passes its decoder, as here.
_SCAN: Final = json.scanner.make_scanner(_DECODER)  # type: ignore[arg-type]

# Where an answer may name the provider's id for the request. No provider documents one
# (PROTOCOLS.md), so these are the names in common use; body fields first: a header may be a
# proxy's or a load balancer's own id, the body is the provider's.
REQUEST_ID_FIELDS: Final = ("request_id", "requestId", "trace_id", "traceId")
REQUEST_ID_HEADERS: Final = ("x-request-id", "request-id", "x-trace-id")
# Real ids are UUIDs or short hex traces; anything longer is cut, so a message stays short.
_REQUEST_ID_LIMIT: Final = 128


def loads(data: bytes | str) -> object:
    """``json.loads``, faster for what providers send: compact UTF-8 JSON (RFC 8259).

    ``json.loads`` sniffs the encoding of bytes and matches whitespace on both sides with a
    regex, about 2 µs of a 3 µs parse of a status answer. Anything the fast path does not take
    whole (whitespace around the value, a BOM, UTF-16, invalid JSON) goes to ``json.loads``,
    so results and errors are exactly its own.
    """
    try:
        text = data.decode() if isinstance(data, bytes) else data
        # The C scanner itself: raw_decode is a Python frame around it, on every answer.
        value, end = _SCAN(text, 0)
    except (ValueError, UnicodeDecodeError, StopIteration):
        return json.loads(data)
    if end != len(text):
        return json.loads(data)
    return value


@attrs.frozen(kw_only=True)
class HttpRequest:
    """A request relative to the provider's base URL.

    Attributes:
        method: HTTP method.
        path: appended to the base URL as is (already quoted), e.g. ``/v1/result/abc``.
        params: query parameters.
        json: the JSON body, or None for no body.
        kind: ``submit``, ``status`` or ``other``; decides retries and the limiter's accounting.
    """

    method: Literal["GET", "POST"]
    path: str
    params: Mapping[str, str] = attrs.field(factory=dict)
    json: JSONValue = None
    kind: Literal["submit", "status", "other"] = "other"


@attrs.frozen(kw_only=True)
class HttpResponse:
    """A complete response.

    Attributes:
        status: HTTP status code.
        headers: response headers, keys lower-cased.
        body: the raw body.
        received_at: wall-clock time (unix seconds) the answer arrived, for HTTP-date
            Retry-After values.
        request_line: ``METHOD URL`` of the request a 404 or 405 answered (no query, no user
            info), so the error can name where it went (a wrong base URL); "" otherwise.
    """

    status: int
    headers: Mapping[str, str] = attrs.field(factory=dict)
    body: bytes = b""
    received_at: float = 0.0
    request_line: str = ""

    def json_object(self, provider: str) -> dict[str, object]:
        """Decode the body as a JSON object.

        Raises:
            BadResponseError: the body is not a JSON object (never a raw JSONDecodeError).
        """
        try:
            value = loads(self.body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            # RecursionError: nesting deeper than the decoder's stack (untrusted input, F32).
            raise BadResponseError(
                f"body is not JSON: {snippet(self.body)}",
                provider=provider,
                status=self.status,
                request_id=self.request_id(),
                body=self.body,
            ) from None
        if not isinstance(value, dict):
            raise BadResponseError(
                f"body is not a JSON object: {snippet(self.body)}",
                provider=provider,
                status=self.status,
                request_id=self.request_id(),
                body=self.body,
            )
        return value

    def request_id(self) -> str | None:
        """The provider's id for this request, for its support: a top-level body field
        (``REQUEST_ID_FIELDS``), else a header (``REQUEST_ID_HEADERS``); None when neither
        holds a usable one.

        Only printable text is taken (a header could otherwise start a forged log line), cut
        to 128 characters. Read on error paths only: it decodes the body again.
        """
        try:
            body = loads(self.body) if self.body[:1] == b"{" else None
        except (ValueError, UnicodeDecodeError, RecursionError):
            body = None
        candidates: list[object] = []
        if isinstance(body, dict):
            candidates += [body.get(name) for name in REQUEST_ID_FIELDS]
        candidates += [self.headers.get(name) for name in REQUEST_ID_HEADERS]
        for value in candidates:
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            if isinstance(value, str):
                value = value.strip()
                if value and value.isprintable():
                    return value[:_REQUEST_ID_LIMIT]
        return None
