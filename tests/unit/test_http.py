"""HttpResponse.json_object and the fast JSON path: the same values and errors as json.loads."""

from __future__ import annotations

import json

import pytest

from nanobanana_async._errors import BadResponseError
from nanobanana_async._http import HttpResponse, loads

BODIES = [
    b'{"code":200,"data":{"taskId":"t"}}',
    b'  {"code": 200}\n',  # whitespace around the value
    '\ufeff{"a": 1}'.encode(),  # a UTF-8 BOM
    '{"a": "caf\u00e9"}'.encode("utf-16"),  # UTF-16, which json.loads detects
    b"[1, 2]",
    b'"text"',
]


@pytest.mark.parametrize("body", BODIES)
def test_loads_gives_what_json_loads_gives(body: bytes) -> None:
    """Compact UTF-8 takes the fast path; anything else is json.loads' own result."""
    try:
        expected = json.loads(body)
    except ValueError:
        expected = ValueError
    assert loads(body) == expected


@pytest.mark.parametrize(
    "body", [b'{"a": 1} trailing', b'{"a": ', b"", b"\xff\xfe\x00", b"{}{}", b"nul", b'"abc']
)
def test_invalid_json_raises_like_json_loads(body: bytes) -> None:
    """Invalid or trailing data is refused with json.loads' own error and message."""
    with pytest.raises(ValueError) as caught:  # noqa: PT011  JSONDecodeError, UnicodeDecodeError
        loads(body)
    with pytest.raises(ValueError) as expected:  # noqa: PT011  the same, from json itself
        json.loads(body)
    assert (type(caught.value), str(caught.value)) == (type(expected.value), str(expected.value))


@pytest.mark.parametrize("body", [b'{"a": 1} x', b"[1]", b"not json"])
def test_json_object_refuses_what_is_not_an_object(body: bytes) -> None:
    """A body that is not one JSON object is a BadResponseError naming the provider."""
    with pytest.raises(BadResponseError, match=r"not a JSON object|not JSON") as caught:
        HttpResponse(status=200, body=body).json_object("apixo")
    assert caught.value.provider == "apixo"
