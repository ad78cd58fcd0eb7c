"""Reading enveloped answers: the common success path and the strict one agree."""

from __future__ import annotations

import json

import pytest

import nanobanana_async as nb
from nanobanana_async._http import HttpResponse
from nanobanana_async.providers import DRIVERS
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


_REF = nb.TaskRef("apixo", "t1", "nano-banana-2")


def _apixo_status(**fields: object) -> HttpResponse:
    data = {"taskId": "t1", "state": "processing", **fields}
    return _answer({"code": 200, "message": "success", "data": data})


@pytest.mark.parametrize(
    ("fields", "elapsed"),
    [
        ({"costTime": 1500}, 1.5),
        ({"costTime": "1500"}, 1.5),  # digits in a string, as some providers send numbers
        ({"costTime": 2**1000}, 2**1000 / 1000),  # the largest int the quick test passes
        ({"costTime": 2**1000 + 1}, (2**1000 + 1) / 1000),  # past it: the full check, still read
        ({"costTime": None, "failMsg": None}, None),  # optional fields may be null
        ({"failCode": [1, {"x": None}]}, None),  # an untyped field is taken as it is
    ],
)
def test_fields_are_read_on_the_quick_path_as_on_the_full_one(
    fields: dict[str, object], elapsed: float | None
) -> None:
    """An answer the quick checks pass reads as the full checks read it."""
    status = DRIVERS["apixo"].parse_status(_apixo_status(**fields), _REF)
    assert status.elapsed == elapsed


@pytest.mark.parametrize(
    "fields",
    [
        {"costTime": True},  # a bool is not a number of milliseconds
        {"costTime": 1.5},
        {"costTime": 10**400},  # past a float's range (F32)
        {"costTime": "15x"},
        {"state": None},  # a required field may not be null
        {"state": 3},
        {"taskId": ["t1"]},
        {"failMsg": 5},
    ],
)
def test_a_mistyped_field_is_the_same_bad_response_on_every_path(fields: dict[str, object]) -> None:
    """Whichever check refuses a field, the error is the one BadResponseError, its message
    naming the shape and quoting the body."""
    answer = _apixo_status(**fields)
    with pytest.raises(nb.BadResponseError) as caught:
        DRIVERS["apixo"].parse_status(answer, _REF)
    assert caught.value.message.startswith("unexpected Status shape: {")


def test_a_missing_required_field_is_a_bad_response() -> None:
    """An answer without the task's state is malformed, never a task still running."""
    answer = _answer({"code": 200, "data": {"taskId": "t1"}})
    with pytest.raises(nb.BadResponseError, match="unexpected Status shape"):
        DRIVERS["apixo"].parse_status(answer, _REF)


@pytest.mark.parametrize("urls", [["https://i/x.png", None], "https://i/x.png", [5]])
def test_result_urls_are_read_strictly(urls: object) -> None:
    """Every item of a list of URLs must be text: a null or a number is no URL."""
    result = {"resultUrls": urls}
    answer = _apixo_status(state="success", resultJson=json.dumps(result))
    with pytest.raises(nb.BadResponseError, match="unexpected ResultJson shape"):
        DRIVERS["apixo"].parse_status(answer, _REF)
