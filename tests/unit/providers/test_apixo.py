"""apixo driver: recorded JSON in, values out."""

from __future__ import annotations

import json

import pytest

import nanobanana_async as nb
from nanobanana_async.providers import DRIVERS, validate

from .helpers import resp

DRIVER = DRIVERS["apixo"]
REF = nb.TaskRef("apixo", "tsk-9", "nano-banana-2")


def test_build_submit_model_in_path_and_defaults() -> None:
    """The model is in the path; mode, aspect_ratio and resolution are always sent."""
    http = DRIVER.build_submit(nb.ImageRequest(prompt="cat"))
    assert (http.method, http.path) == ("POST", "/generateTask/nano-banana-2")
    assert http.json == {
        "input": {
            "mode": "text-to-image",
            "prompt": "cat",
            "aspect_ratio": "auto",
            "resolution": "1k",
        }
    }


def test_build_submit_callback_and_image_to_image() -> None:
    """A callback sets request_type=callback; reference images select image-to-image."""
    request = nb.ImageRequest(
        prompt="cat",
        model="nano-banana",
        image_urls=("https://x.test/a",),
        output_format="jpg",
        callback_url="https://cb.test/h",
    )
    http = DRIVER.build_submit(request)
    assert http.path == "/generateTask/nano-banana"
    assert http.json == {
        "request_type": "callback",
        "callback_url": "https://cb.test/h",
        "input": {
            "mode": "image-to-image",
            "prompt": "cat",
            "image_urls": ["https://x.test/a"],
            "aspect_ratio": "1:1",
            "output_format": "jpeg",
        },
    }


def test_status_request_keeps_model_in_path() -> None:
    """Polling needs the model again, in the path."""
    http = DRIVER.build_status(REF)
    assert (http.path, dict(http.params)) == ("/statusTask/nano-banana-2", {"taskId": "tsk-9"})


def _status(**data: object) -> dict[str, object]:
    return {"code": 200, "message": "success", "data": {"taskId": "tsk-9", **data}}


@pytest.mark.parametrize(
    ("body", "state", "urls"),
    [
        (_status(state="pending", createTime=1), nb.TaskState.QUEUED, ()),
        (_status(state="processing"), nb.TaskState.RUNNING, ()),
        (
            _status(
                state="success",
                resultJson=json.dumps({"resultUrls": ["https://r/1", "https://r/2"]}),
                completeTime=2,
                costTime=1,
            ),
            nb.TaskState.SUCCEEDED,
            ("https://r/1", "https://r/2"),
        ),
        (
            _status(state="failed", failCode="CONTENT_VIOLATION", failMsg="no"),
            nb.TaskState.FAILED,
            (),
        ),
        (_status(state="warming_up"), nb.TaskState.UNKNOWN, ()),
    ],
)
def test_parse_status(body: object, state: nb.TaskState, urls: tuple[str, ...]) -> None:
    """`state` maps as documented; resultJson is decoded from its JSON string."""
    status = DRIVER.parse_status(resp(body), REF)
    assert (status.state, status.urls) == (state, urls)


@pytest.mark.parametrize("code", ["CONTENT_VIOLATION", "SensitiveContentDetected", "NSFW"])
def test_policy_fail_codes(code: str) -> None:
    """Both failCode vocabularies are recognized as content policy."""
    status = DRIVER.parse_status(resp(_status(state="failed", failCode=code)), REF)
    assert status.content_policy
    assert status.error_code == code


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (resp(_status(state="success", resultJson="{not json")), nb.BadResponseError),
        (resp(_status(state="success", resultJson='{"resultUrls": "x"}')), nb.BadResponseError),
        (
            resp({"code": 400, "message": "Invalid request", "data": {"error": "x"}}, 400),
            nb.APIError,
        ),
        (resp({"code": 401, "message": "Unauthorized", "data": None}, 401), nb.AuthenticationError),
        # PROTOCOLS.md 4, "Errors [C]": "403 forbidden/content policy": not the key's refusal.
        (
            resp({"code": 403, "message": "Forbidden", "data": None}, 403),
            nb.RequestRejectedError,
        ),
        (
            resp({"code": 402, "message": "Insufficient", "data": None}, 402),
            nb.InsufficientCreditsError,
        ),
        (
            resp({"code": 429, "message": "Rate", "data": None}, 429, {"retry-after-ms": "2500"}),
            nb.RateLimitError,
        ),
        (
            resp({"code": 503, "message": "Unavailable", "data": None}, 503),
            nb.ProviderUnavailableError,
        ),
    ],
)
def test_errors(response: object, error: type[Exception]) -> None:
    """Error statuses and broken resultJson become typed errors."""
    with pytest.raises(error):
        DRIVER.parse_status(response, REF)  # type: ignore[arg-type]


def test_callback_is_a_status_envelope() -> None:
    """The webhook body is a status answer; code 200 does not mean success."""
    body = json.dumps(_status(state="failed", failCode="GENERATION_FAILED")).encode()
    hint = DRIVER.parse_callback(body)
    assert (hint.task_id, hint.claimed_state) == ("tsk-9", nb.TaskState.FAILED)


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({"model": "nano-banana-pro"}, "$.model"),
        (
            {"model": "nano-banana", "image_urls": tuple(f"https://x.test/{i}" for i in range(6))},
            "$.image_urls",
        ),
        ({"model": "nano-banana", "prompt": "x" * 5001}, "$.prompt"),
        ({"model": "nano-banana", "resolution": "1K"}, "$.resolution"),
        ({"model": "nano-banana", "aspect_ratio": "8:1"}, "$.aspect_ratio"),
        ({"model": "nano-banana", "google_search": True}, "$.google_search"),
    ],
)
def test_capabilities(kwargs: dict[str, object], path: str) -> None:
    """apixo's per-model limits are enforced before any I/O."""
    fields: dict[str, object] = {"prompt": "cat", **kwargs}
    with pytest.raises(nb.InvalidRequestError) as info:
        validate(DRIVER, nb.ImageRequest(**fields))  # type: ignore[arg-type]
    assert any(e.endswith(f"@ {path}") for e in info.value.errors)
