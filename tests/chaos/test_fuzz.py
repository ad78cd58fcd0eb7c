"""Fuzz every driver parser with arbitrary JSON and bytes: only typed errors escape."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nanobanana_async as nb
from nanobanana_async._http import HttpResponse
from nanobanana_async.providers import DRIVERS

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)
KEYS = st.sampled_from(
    [
        "id",
        "status",
        "image_url",
        "error",
        "task_id",
        "result",
        "media_urls",
        "taskId",
        "successFlag",
        "response",
        "resultImageUrl",
        "state",
        "resultJson",
        "failCode",
        "code",
        "data",
        "message",
        "msg",
        "costTime",
        "duration_s",
    ]
)
# Objects made of the names providers use, so the fuzz reaches past the first shape check.
SHAPED = st.recursive(
    JSON,
    lambda inner: st.dictionaries(KEYS, inner, max_size=6),
    max_leaves=25,
)
WRAPPED = st.builds(
    lambda code, data: {"code": code, "message": "m", "data": data},
    st.sampled_from([200, 200, 200, 429, 401, 500, "200", None]),
    SHAPED,
)
BODIES = (
    st.binary(max_size=200)
    | SHAPED.map(lambda v: json.dumps(v).encode())
    | WRAPPED.map(lambda v: json.dumps(v).encode())
)
STATUS = st.sampled_from([200, 200, 200, 400, 401, 402, 404, 429, 455, 500, 503])
# 100 examples per parser and provider keep the suite fast; NB_FUZZ_EXAMPLES=5000 fuzzes harder.
FUZZ = settings(
    max_examples=int(os.environ.get("NB_FUZZ_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.parametrize("provider", sorted(DRIVERS))
@FUZZ
@given(status=STATUS, body=BODIES)
def test_parse_status_raises_only_typed_errors(provider: str, status: int, body: bytes) -> None:
    """parse_status returns a TaskStatus or raises a NanoBananaError, nothing else."""
    driver = DRIVERS[provider]
    ref = nb.TaskRef(provider, "t1", "nano-banana-2")
    try:
        result = driver.parse_status(HttpResponse(status=status, body=body), ref)
    except nb.NanoBananaError:
        return
    assert isinstance(result, nb.TaskStatus)
    assert all(isinstance(u, str) for u in result.urls)


@pytest.mark.parametrize("provider", sorted(DRIVERS))
@FUZZ
@given(status=STATUS, body=BODIES)
def test_parse_submit_raises_only_typed_errors(provider: str, status: int, body: bytes) -> None:
    """parse_submit returns a TaskRef or raises a NanoBananaError, nothing else."""
    driver = DRIVERS[provider]
    try:
        ref = driver.parse_submit(
            HttpResponse(status=status, body=body), nb.ImageRequest(prompt="c")
        )
    except nb.NanoBananaError:
        return
    assert isinstance(ref.task_id, str)


@pytest.mark.parametrize("provider", ["crun", "nanobananaapi", "apixo"])
@FUZZ
@given(body=BODIES)
def test_parse_callback_raises_only_typed_errors(provider: str, body: bytes) -> None:
    """parse_callback returns a hint or raises a NanoBananaError, nothing else."""
    try:
        hint = DRIVERS[provider].parse_callback(body)
    except nb.NanoBananaError:
        return
    assert isinstance(hint.task_id, str)
