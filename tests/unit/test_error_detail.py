"""Errors carry the provider's words (issue 11, item 4): apixo's 400 names the reason in
``data.error``, and the message says it, bounded."""

from __future__ import annotations

import json

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
