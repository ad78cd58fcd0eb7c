"""HTTP requests and responses as plain values, so drivers never see aiohttp (no I/O)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final, Literal

import attrs

from ._errors import BadResponseError, snippet

JSONValue = object
"""Decoded JSON: dicts, lists, strings, numbers, booleans and None."""


_DECODER: Final = json.JSONDecoder()


def loads(data: bytes | str) -> object:
    """``json.loads``, faster for what providers send: compact UTF-8 JSON (RFC 8259).

    ``json.loads`` sniffs the encoding of bytes and matches whitespace on both sides with a
    regex, about 2 µs of a 3 µs parse of a status answer. Anything the fast path does not take
    whole (whitespace around the value, a BOM, UTF-16, invalid JSON) goes to ``json.loads``,
    so results and errors are exactly its own.
    """
    try:
        text = data.decode() if isinstance(data, bytes) else data
        value, end = _DECODER.raw_decode(text)
    except (ValueError, UnicodeDecodeError):
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
    """

    status: int
    headers: Mapping[str, str] = attrs.field(factory=dict)
    body: bytes = b""
    received_at: float = 0.0

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
                f"body is not JSON: {snippet(self.body)}", provider=provider, status=self.status
            ) from None
        if not isinstance(value, dict):
            raise BadResponseError(
                f"body is not a JSON object: {snippet(self.body)}",
                provider=provider,
                status=self.status,
            )
        return value
