"""nanobananaapi driver: recorded JSON in, values out."""

from __future__ import annotations

import pytest

import nanobanana_async as nb
from nanobanana_async.providers import DRIVERS, validate

from .helpers import resp

DRIVER = DRIVERS["nanobananaapi"]
REF = nb.TaskRef("nanobananaapi", "t-1", "nano-banana-2")
CB = "https://cb.test/h"


@pytest.mark.parametrize(
    ("request_", "path", "body"),
    [
        (
            nb.ImageRequest(
                prompt="c",
                resolution="4k",
                aspect_ratio="4:1",
                output_format="jpeg",
                google_search=True,
            ),
            "/api/v1/nanobanana/generate-2",
            {
                "prompt": "c",
                "imageUrls": [],
                "aspectRatio": "4:1",
                "resolution": "4K",
                "googleSearch": True,
                "outputFormat": "jpg",
            },
        ),
        (
            nb.ImageRequest(
                prompt="c",
                model="nano-banana-pro",
                resolution="2K",
                aspect_ratio="auto",
                callback_url=CB,
            ),
            "/api/v1/nanobanana/generate-pro",
            {"prompt": "c", "resolution": "2K", "aspectRatio": "auto", "callBackUrl": CB},
        ),
        (
            nb.ImageRequest(
                prompt="c",
                model="nano-banana",
                aspect_ratio="3:2",
                callback_url=CB,
                image_urls=("https://x.test/a",),
            ),
            "/api/v1/nanobanana/generate",
            {
                "prompt": "c",
                "type": "IMAGETOIAMGE",
                "callBackUrl": CB,
                "numImages": 1,
                "imageUrls": ["https://x.test/a"],
                "image_size": "3:2",
            },
        ),
        (
            nb.ImageRequest(prompt="c", model="nano-banana", callback_url=CB),
            "/api/v1/nanobanana/generate",
            {"prompt": "c", "type": "TEXTTOIAMGE", "callBackUrl": CB, "numImages": 1},
        ),
    ],
)
def test_build_submit_by_endpoint(request_: nb.ImageRequest, path: str, body: object) -> None:
    """The model picks the endpoint; fields are camelCase (NB1: type and image_size)."""
    http = DRIVER.build_submit(request_)
    assert (http.path, http.json) == (path, body)


def test_parse_submit() -> None:
    """`data.taskId` is the id."""
    body = {"code": 200, "message": "success", "data": {"taskId": "t-1"}}
    assert DRIVER.parse_submit(resp(body), nb.ImageRequest(prompt="c")) == REF


def _record(flag: object, **extra: object) -> dict[str, object]:
    data = {
        "taskId": "t-1",
        "paramJson": "{}",
        "completeTime": "",
        "createTime": "",
        "response": None,
        "successFlag": flag,
        "errorCode": None,
        "errorMessage": "",
    }
    data.update(extra)
    return {"code": 200, "msg": "success", "data": data}


@pytest.mark.parametrize(
    ("body", "state", "urls"),
    [
        (_record(0), nb.TaskState.RUNNING, ()),
        (
            _record(1, response={"originImageUrl": "https://o/x", "resultImageUrl": "https://r/x"}),
            nb.TaskState.SUCCEEDED,
            ("https://r/x",),
        ),
        (_record(2, errorCode=400, errorMessage="bad"), nb.TaskState.FAILED, ()),
        (_record(3, errorCode=501, errorMessage="failed"), nb.TaskState.FAILED, ()),
        (_record(9), nb.TaskState.UNKNOWN, ()),
        (
            _record("1", response={"resultImageUrl": "https://r/y"}),
            nb.TaskState.SUCCEEDED,
            ("https://r/y",),
        ),
    ],
)
def test_parse_status(body: object, state: nb.TaskState, urls: tuple[str, ...]) -> None:
    """successFlag decides; resultImageUrl (not the 10-minute origin URL) is the image."""
    status = DRIVER.parse_status(resp(body), REF)
    assert (status.state, status.urls) == (state, urls)


def test_record_info_request() -> None:
    """record-info takes `taskId`."""
    http = DRIVER.build_status(REF)
    assert (http.path, dict(http.params)) == ("/api/v1/nanobanana/record-info", {"taskId": "t-1"})


def test_success_looking_envelope_with_failed_flag() -> None:
    """HTTP 200 and code 200 with successFlag 3 is a failure, never a result."""
    status = DRIVER.parse_status(resp(_record(3, errorMessage="Sensitive content")), REF)
    assert status.state is nb.TaskState.FAILED
    assert status.content_policy


def test_callback_generate_2_claims_from_flag() -> None:
    """generate-2 callbacks carry code 200 even for failures: the flag is the claim."""
    body = (
        b'{"code":200,"msg":"success","data":{"taskId":"t-1","successFlag":3,"operationType":"x"}}'
    )
    hint = DRIVER.parse_callback(body)
    assert (hint.task_id, hint.claimed_state) == ("t-1", nb.TaskState.FAILED)


def test_callback_nb1_claims_from_code() -> None:
    """NB1 callbacks put the outcome in the top-level code."""
    body = b'{"code":400,"msg":"flagged","data":{"taskId":"t-2","info":{"resultImageUrl":null}}}'
    hint = DRIVER.parse_callback(body)
    assert (hint.task_id, hint.claimed_state) == ("t-2", nb.TaskState.FAILED)


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({"model": "nano-banana-pro"}, "$.callback_url"),
        ({"model": "nano-banana"}, "$.callback_url"),
        (
            {
                "model": "nano-banana-pro",
                "callback_url": CB,
                "image_urls": tuple(f"https://x.test/{i}" for i in range(9)),
            },
            "$.image_urls",
        ),
        ({"image_urls": tuple(f"https://x.test/{i}" for i in range(15))}, "$.image_urls"),
        ({"model": "nano-banana", "callback_url": CB, "resolution": "1K"}, "$.resolution"),
        ({"model": "nano-banana-pro", "callback_url": CB, "aspect_ratio": "1:8"}, "$.aspect_ratio"),
        ({"resolution": "8K"}, "$.resolution"),
    ],
)
def test_capabilities(kwargs: dict[str, object], path: str) -> None:
    """Endpoint limits (refs 14/8, callback required on NB1 and Pro) are enforced first."""
    fields: dict[str, object] = {"prompt": "cat", **kwargs}
    with pytest.raises(nb.InvalidRequestError) as info:
        validate(DRIVER, nb.ImageRequest(**fields))  # type: ignore[arg-type]
    assert any(e.endswith(f"@ {path}") for e in info.value.errors)


def test_a_missing_required_callback_url_is_named_in_missing() -> None:
    """A model that requires a callback URL, asked without one: the error's ``missing`` names
    the field and what requires it (a caller asks for it in its own terms); a request that
    lacks nothing has an empty ``missing``."""
    with pytest.raises(nb.InvalidRequestError) as caught:
        validate(DRIVER, nb.ImageRequest(prompt="c", model="nano-banana"))
    assert caught.value.missing == {"callback_url": "nanobananaapi nano-banana"}
    with pytest.raises(nb.InvalidRequestError) as other:
        validate(
            DRIVER,
            nb.ImageRequest(prompt="c", model="nano-banana", callback_url=CB, resolution="1K"),
        )
    assert other.value.missing == {}
