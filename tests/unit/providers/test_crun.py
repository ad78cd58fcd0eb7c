"""crun driver: recorded JSON in, values out."""

from __future__ import annotations

import pytest

import nanobanana_async as nb
from nanobanana_async.providers import DRIVERS, validate

from .helpers import resp

DRIVER = DRIVERS["crun"]
REF = nb.TaskRef("crun", "task_12345678", "google/nano-banana-2")


def test_build_submit_nests_input_and_snake_case_callback() -> None:
    """Parameters go under `input`; the callback field is snake_case `callback_url`."""
    request = nb.ImageRequest(
        prompt="cat",
        model="nano-banana-2",
        resolution="2k",
        aspect_ratio="1:8",
        output_format="jpeg",
        google_search=True,
        image_urls=("https://x.test/1.png",),
        callback_url="https://cb.test/h",
    )
    http = DRIVER.build_submit(request)
    assert (http.method, http.path) == ("POST", "/api/v1/client/job/CreateTask")
    assert http.json == {
        "model": "google/nano-banana-2",
        "input": {
            "prompt": "cat",
            "aspect_ratio": "1:8",
            "output_format": "jpg",
            "img_urls": ["https://x.test/1.png"],
            "resolution": "2K",
            "google_search": True,
        },
        "callback_url": "https://cb.test/h",
    }


def test_classic_model_sends_jpeg() -> None:
    """google/nano-banana takes png/jpeg (not jpg)."""
    http = DRIVER.build_submit(
        nb.ImageRequest(prompt="c", model="nano-banana", output_format="jpg")
    )
    assert http.json == {
        "model": "google/nano-banana",
        "input": {"prompt": "c", "output_format": "jpeg"},
    }


def test_parse_submit() -> None:
    """`data.task_id` is the id."""
    body = {"code": 200, "message": "success", "data": {"task_id": "task_12345678"}}
    assert DRIVER.parse_submit(resp(body), nb.ImageRequest(prompt="c")) == REF


def test_status_request() -> None:
    """TaskInfo takes the id as `task_id` query parameter."""
    http = DRIVER.build_status(REF)
    assert (http.path, dict(http.params)) == (
        "/api/v1/client/job/TaskInfo",
        {"task_id": "task_12345678"},
    )


def _info(status: str, result: object = None) -> dict[str, object]:
    return {
        "code": 200,
        "message": "success",
        "data": {
            "task_id": "task_12345678",
            "provider": "google",
            "model_version": "google/nano-banana-2",
            "status": status,
            "param": {
                "model": "google/nano-banana-2",
                "callback_url": None,
                "input": {"prompt": "c", "aspect_ratio": "16:9", "output_format": "png"},
            },
            "create_at": 1760000000,
            "result": result,
            "duration_s": None,
            "complete_at": None,
            "source": "api",
        },
    }


@pytest.mark.parametrize(
    ("body", "state", "urls"),
    [
        (_info("pending"), nb.TaskState.QUEUED, ()),
        (_info("running"), nb.TaskState.RUNNING, ()),
        (
            _info(
                "success",
                {"code": 200, "message": "ok", "media_urls": ["https://i/a", "https://i/b"]},
            ),
            nb.TaskState.SUCCEEDED,
            ("https://i/a", "https://i/b"),
        ),
        (_info("failed", {"code": 501, "message": "Generation failed"}), nb.TaskState.FAILED, ()),
        (_info("warming_up"), nb.TaskState.UNKNOWN, ()),
    ],
)
def test_parse_status(body: object, state: nb.TaskState, urls: tuple[str, ...]) -> None:
    """States map as documented; media_urls is a list."""
    status = DRIVER.parse_status(resp(body), REF)
    assert (status.state, status.urls) == (state, urls)


def test_failed_result_keeps_code_and_policy_flag() -> None:
    """A failure's code and message are read from `result`; sensitive content is policy."""
    status = DRIVER.parse_status(
        resp(_info("failed", {"code": 501, "message": "Sensitive content detected"})), REF
    )
    assert status.error_code == 501
    assert status.content_policy


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"code": 429, "message": "Rate limited", "data": None}, nb.RateLimitError),
        ({"code": 401, "message": "bad key", "data": None}, nb.AuthenticationError),
        ({"code": 402, "message": "no credits", "data": None}, nb.InsufficientCreditsError),
        ({"code": 455, "message": "maintenance", "data": None}, nb.ProviderUnavailableError),
        ({"code": 500, "message": "oops", "data": None}, nb.ProviderUnavailableError),
        ({"code": 404, "message": "no such task", "data": None}, nb.APIError),
        ({"code": 200, "message": "success", "data": {"status": "running"}}, nb.BadResponseError),
        ({"message": "no code"}, nb.BadResponseError),
    ],
)
def test_body_code_errors_with_http_200(body: object, error: type[Exception]) -> None:
    """crun's body code decides even under HTTP 200 (429 included)."""
    with pytest.raises(error) as info:
        DRIVER.parse_status(resp(body, 200), REF)
    if isinstance(info.value, nb.APIError) and not isinstance(info.value, nb.BadResponseError):
        assert info.value.task_id == REF.task_id


@pytest.mark.parametrize(
    "body",
    [
        b'{"task_id": "task_1", "status": "success", "result": {"media_urls": ["https://i/a"]}}',
        b'{"data": {"task_id": "task_1", "status": "success", "result": null}}',
    ],
)
def test_callback_bare_or_wrapped(body: bytes) -> None:
    """Callbacks are read bare or wrapped in {data: ...}."""
    hint = DRIVER.parse_callback(body)
    assert hint.task_id == "task_1"
    assert hint.claimed_state is nb.TaskState.SUCCEEDED


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({"model": "nano-banana", "resolution": "2K"}, "$.resolution"),
        ({"model": "google/nano-banana-v2", "resolution": "2K"}, "$.resolution"),
        ({"model": "google/nano-banana-v2", "output_format": "png"}, "$.output_format"),
        ({"model": "nano-banana-pro", "google_search": True}, "$.google_search"),
        ({"model": "google/nano-banana-v2", "resolution": "4K"}, "$.resolution"),
        (
            {
                "model": "nano-banana-2",
                "image_urls": tuple(f"https://x.test/{i}" for i in range(15)),
            },
            "$.image_urls",
        ),
        ({"prompt": "x" * 20_001}, "$.prompt"),
        ({"output_format": "webp"}, "$.output_format"),
    ],
)
def test_capabilities(kwargs: dict[str, object], path: str) -> None:
    """crun's per-model limits are enforced before any I/O."""
    fields: dict[str, object] = {"prompt": "cat", **kwargs}
    with pytest.raises(nb.InvalidRequestError) as info:
        validate(DRIVER, nb.ImageRequest(**fields))  # type: ignore[arg-type]
    assert any(e.endswith(f"@ {path}") for e in info.value.errors)
