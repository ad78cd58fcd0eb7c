"""xingchao driver: recorded JSON in, values out."""

from __future__ import annotations

import pytest

import nanobanana_async as nb
from nanobanana_async.providers import DRIVERS, validate

from .helpers import resp

DRIVER = DRIVERS["xingchao"]
REF = nb.TaskRef("xingchao", "abc123", "nano-banana-2")


def test_build_submit_uses_size_and_lowercase_resolution() -> None:
    """Aspect ratio goes in `size`, resolution is lower-case, no envelope."""
    request = nb.ImageRequest(
        prompt="cat",
        model="nano-banana-pro",
        resolution="2K",
        aspect_ratio="16:9",
        image_urls=("https://x.test/1.png",),
    )
    http = DRIVER.build_submit(request)
    assert (http.method, http.path) == ("POST", "/v1/banana/images")
    assert http.json == {
        "model": "nano-banana-pro",
        "prompt": "cat",
        "resolution": "2k",
        "size": "16:9",
        "image_urls": ["https://x.test/1.png"],
    }


def test_build_submit_omits_unset_fields() -> None:
    """Optional fields left unset are not sent at all."""
    http = DRIVER.build_submit(nb.ImageRequest(prompt="cat"))
    assert http.json == {"model": "nano-banana-2", "prompt": "cat"}


def test_parse_submit_reads_id() -> None:
    """The documented create answer gives the id."""
    body = {
        "id": "abc123",
        "object": "nanobanana",
        "created": 1,
        "model": "nano-banana-2",
        "status": "queued",
    }
    ref = DRIVER.parse_submit(resp(body), nb.ImageRequest(prompt="cat"))
    assert ref == REF


def test_parse_submit_failed_create_raises_with_id() -> None:
    """A create answered `failed` raises a content-policy error that keeps the task id."""
    body = {
        "id": "abc123",
        "object": "nanobanana",
        "created": 1,
        "model": "nano-banana-2",
        "status": "failed",
        "error": "Invalid prompt: content policy violation",
    }
    with pytest.raises(nb.ContentPolicyError) as info:
        DRIVER.parse_submit(resp(body), nb.ImageRequest(prompt="cat"))
    assert info.value.task_id == "abc123"


@pytest.mark.parametrize(
    ("body", "state", "urls"),
    [
        ({"id": "abc123", "status": "queued", "image_url": None}, nb.TaskState.QUEUED, ()),
        ({"id": "abc123", "status": "processing"}, nb.TaskState.RUNNING, ()),
        (
            {"id": "abc123", "status": "completed", "image_url": "https://i.test/a.png"},
            nb.TaskState.SUCCEEDED,
            ("https://i.test/a.png",),
        ),
        ({"id": "abc123", "status": "failed", "error": "boom"}, nb.TaskState.FAILED, ()),
        ({"id": "abc123", "status": "warming_up"}, nb.TaskState.UNKNOWN, ()),
        (
            {
                "data": {"id": "abc123", "status": "completed", "image_url": "https://i.test/b"},
                "amount": 3,
            },
            nb.TaskState.SUCCEEDED,
            ("https://i.test/b",),
        ),
    ],
)
def test_parse_status(body: object, state: nb.TaskState, urls: tuple[str, ...]) -> None:
    """Each documented status maps to its state; the single URL becomes a tuple."""
    status = DRIVER.parse_status(resp(body), REF)
    assert status.state is state
    assert status.urls == urls


def test_status_path_quotes_the_id() -> None:
    """The id sits in the path, quoted."""
    assert DRIVER.build_status(nb.TaskRef("xingchao", "a/b c", "m")).path == "/v1/result/a%2Fb%20c"


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (resp({"error": {"message": "bad key"}}, 401), nb.AuthenticationError),
        (resp({"error": "slow down"}, 429, {"retry-after": "3"}), nb.RateLimitError),
        (resp("<html>oops</html>", 502), nb.ProviderUnavailableError),
        (resp('{"status":'), nb.BadResponseError),
        (resp({"status": "completed"}), nb.BadResponseError),
        (resp({"id": 5, "status": "queued"}), nb.BadResponseError),
        (resp([1, 2]), nb.BadResponseError),
    ],
)
def test_parse_status_errors(response: nb.TaskStatus, error: type[Exception]) -> None:
    """HTTP errors and malformed bodies become typed errors, never raw exceptions."""
    with pytest.raises(error):
        DRIVER.parse_status(response, REF)  # type: ignore[arg-type]


def test_rate_limit_reads_retry_after() -> None:
    """A 429's Retry-After is carried on the error."""
    with pytest.raises(nb.RateLimitError) as info:
        DRIVER.parse_status(resp({"error": "x"}, 429, {"retry-after": "3"}), REF)
    assert info.value.retry_after == 3.0


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({"model": "nano-banana", "resolution": "4K"}, "$.resolution"),
        ({"model": "nano-banana-2-stable", "resolution": "2K"}, "$.resolution"),
        ({"aspect_ratio": "auto"}, "$.aspect_ratio"),
        ({"aspect_ratio": "1:8"}, "$.aspect_ratio"),
        ({"image_urls": tuple(f"https://x.test/{i}" for i in range(7))}, "$.image_urls"),
        ({"output_format": "png"}, "$.output_format"),
        ({"google_search": True}, "$.google_search"),
        ({"callback_url": "https://cb.test/x"}, "$.callback_url"),
        ({"model": "dall-e"}, "$.model"),
    ],
)
def test_capabilities(kwargs: dict[str, object], path: str) -> None:
    """What xingchao does not offer is refused before any I/O, naming the field."""
    request = nb.ImageRequest(prompt="cat", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(nb.InvalidRequestError) as info:
        validate(DRIVER, request)
    assert any(e.endswith(f"@ {path}") for e in info.value.errors)


def test_pro_takes_4k_and_own_model_ids() -> None:
    """nano-banana-pro takes 4K; provider ids such as nano-banana-2-stable work."""
    validate(DRIVER, nb.ImageRequest(prompt="cat", model="nano-banana-pro", resolution="4k"))
    validate(DRIVER, nb.ImageRequest(prompt="cat", model="nano-banana-2-stable"))
