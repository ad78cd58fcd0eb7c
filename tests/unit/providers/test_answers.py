"""Reading enveloped answers: the common success path and the strict one agree."""

from __future__ import annotations

import json

import pytest

import nanobanana_async as nb
from nanobanana_async._http import HttpResponse
from nanobanana_async.providers._answers import open_envelope


def _answer(body: object, status: int = 200, raw: bytes | None = None) -> HttpResponse:
    return HttpResponse(status=status, body=raw if raw is not None else json.dumps(body).encode())


def test_a_success_envelope_gives_its_data_with_or_without_a_bom() -> None:
    """code 200 gives ``data``; a UTF-8 byte-order mark some servers send is tolerated."""
    body = {"code": 200, "message": "success", "data": {"taskId": "t1"}}
    assert open_envelope(_answer(body), "apixo") == {"taskId": "t1"}
    bom = b"\xef\xbb\xbf" + json.dumps(body).encode()
    assert open_envelope(_answer(None, raw=bom), "apixo") == {"taskId": "t1"}
    assert open_envelope(_answer({"code": "200", "data": 5}), "apixo") == 5  # digits, as crun


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"code": 402, "message": "no credits", "data": None}, nb.InsufficientCreditsError),
        ({"code": 429, "msg": "slow down"}, nb.RateLimitError),
        ({"code": True, "data": {}}, nb.BadResponseError),  # a bool is not a code
        ({"data": {}}, nb.BadResponseError),  # no code at all
    ],
)
def test_anything_but_code_200_takes_the_strict_path(body: object, error: type) -> None:
    """A body code other than 200 is the provider's typed refusal; a missing or mistyped code
    is a malformed answer, never a success."""
    with pytest.raises(error):
        open_envelope(_answer(body), "apixo")


def test_a_body_that_is_not_utf8_json_is_a_bad_response() -> None:
    """Bytes that are not UTF-8 JSON raise BadResponseError, not a decoding error."""
    with pytest.raises(nb.BadResponseError):
        open_envelope(_answer(None, raw=b"\xff\xfe{}"), "apixo")


@pytest.mark.parametrize("key", ["message", "msg"])
def test_code_200_with_a_mistyped_message_is_a_bad_response(key: str) -> None:
    """The fast path checks the message fields too: a code-200 envelope whose message is not
    text is malformed, as the strict path says."""
    with pytest.raises(nb.BadResponseError, match="Envelope shape"):
        open_envelope(_answer({"code": 200, key: 5, "data": {}}), "apixo")
