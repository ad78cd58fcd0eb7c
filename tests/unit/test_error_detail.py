"""Errors carry the provider's words (issue 11, item 4): apixo's 400 names the reason in
``data.error``, and the message says it, bounded."""

from __future__ import annotations

import json
import pickle

import pytest

import nanobanana_async as nb
from nanobanana_async.providers import DRIVERS
from nanobanana_async.testing import HttpResponse


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
