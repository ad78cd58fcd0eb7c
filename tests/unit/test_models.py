"""ImageRequest validation and the normalized value types."""

from __future__ import annotations

import subprocess
import sys
import typing
from urllib.parse import urlsplit

import pytest

import nanobanana_async as nb
import nanobanana_async.testing
from nanobanana_async._models import is_http_url
from nanobanana_async.providers import DRIVERS
from nanobanana_async.providers._base import CANONICAL_MODELS, normalize_format


def test_valid_request_keeps_its_fields() -> None:
    """A valid request stores what the caller gave, image URLs as a tuple."""
    request = nb.ImageRequest(
        prompt="a cat", model="nano-banana-pro", image_urls=["https://x.test/a.png"]
    )
    assert request.image_urls == ("https://x.test/a.png",)
    assert request.model == "nano-banana-pro"


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({"prompt": ""}, "$.prompt"),
        ({"prompt": "   "}, "$.prompt"),
        ({"prompt": "a", "timeout": 0}, "$.timeout"),
        ({"prompt": "a", "timeout": -5}, "$.timeout"),
        ({"prompt": "a", "timeout": float("nan")}, "$.timeout"),
        ({"prompt": "a", "image_urls": ["ftp://x.test/a.png"]}, "$.image_urls[0]"),
        ({"prompt": "a", "image_urls": ["not a url"]}, "$.image_urls[0]"),
        ({"prompt": "a", "image_urls": 5}, "$.image_urls[0]"),  # was a bare TypeError
        ({"prompt": "a", "callback_url": "file:///etc/passwd"}, "$.callback_url"),
        ({"prompt": "a", "google_search": "yes"}, "$.google_search"),
        ({"prompt": "a", "model": ""}, "$.model"),
    ],
)
def test_invalid_request_names_the_field(kwargs: dict[str, object], path: str) -> None:
    """Each invalid value raises InvalidRequestError naming its JSON path."""
    with pytest.raises(nb.InvalidRequestError) as info:
        nb.ImageRequest(**kwargs)  # type: ignore[arg-type]
    assert any(error.endswith(f"@ {path}") for error in info.value.errors)
    assert isinstance(info.value, ValueError)


def test_all_problems_are_reported_at_once() -> None:
    """Several bad fields give one error listing each of them."""
    with pytest.raises(nb.InvalidRequestError) as info:
        nb.ImageRequest(prompt="", timeout=-1, image_urls=("x",))
    assert len(info.value.errors) == 3


def test_from_mapping_rejects_unknown_keys() -> None:
    """A CSV or JSON row with an unknown column is refused by name."""
    with pytest.raises(nb.InvalidRequestError, match=r"\$\.colour"):
        nb.ImageRequest.from_mapping({"prompt": "a", "colour": "red"})
    assert nb.ImageRequest.from_mapping({"prompt": "a"}).prompt == "a"


def test_terminal_states() -> None:
    """Only SUCCEEDED and FAILED are terminal; UNKNOWN keeps polling."""
    assert {s for s in nb.TaskState if s.is_terminal} == {
        nb.TaskState.SUCCEEDED,
        nb.TaskState.FAILED,
    }


PUBLIC_API = (
    "APIError",
    "AccountStatistics",
    "AspectRatio",
    "Attempt",
    "AuthenticationError",
    "BadResponseError",
    "Balance",
    "CallbackReceiver",
    "CallbackStatistics",
    "CircuitPolicy",
    "Client",
    "ClientClosedError",
    "ClientStatistics",
    "ConfigurationError",
    "ConnectError",
    "ContentPolicyError",
    "CoordinatorStateError",
    "CoordinatorUnavailableError",
    "DuplicateSubmitError",
    "GenerationFailedError",
    "Hedge",
    "ImageClient",
    "ImageRequest",
    "ImageResult",
    "InsufficientCreditsError",
    "InvalidRequestError",
    "Limits",
    "ModelName",
    "NanoBananaError",
    "NotSupportedError",
    "OutputFormat",
    "ProviderRefusedError",
    "ProviderUnavailableError",
    "RateLimitError",
    "RequestRejectedError",
    "RequestTimeoutError",
    "Resolution",
    "RetryPolicy",
    "Router",
    "RouterStatistics",
    "StorageError",
    "SubmitOutcomeUnknownError",
    "Task",
    "TaskError",
    "TaskRef",
    "TaskState",
    "TaskStatus",
    "TaskTimeoutError",
    "Timeouts",
    "TransportError",
    "WebhookVerificationError",
    "WrongAccountError",
    "__version__",
)
TESTING_API = (
    "FakeClock",
    "Faults",
    "HttpRequest",
    "HttpResponse",
    "Latency",
    "Outage",
    "ScriptedTransport",
    "ServerLimits",
    "Simulator",
    "SimulatorStats",
    "Simulators",
    "json_response",
    "settle",
)


def test_public_api_is_pinned() -> None:
    """__all__ is exactly the pinned public names, sorted, each importable: a name added or
    dropped by accident fails here (change the pin on purpose, with a CHANGELOG line)."""
    assert nb.__all__ == PUBLIC_API
    assert nb.testing.__all__ == TESTING_API
    for module, names in ((nb, PUBLIC_API), (nb.testing, TESTING_API)):
        assert list(names) == sorted(names)
        for name in names:
            assert getattr(module, name) is not None


def test_the_literal_types_name_what_the_providers_take() -> None:
    """Editors complete these values, so each must be one some provider's table accepts, and
    the canonical models and every ratio any table lists must be there."""
    specs = [
        spec
        for driver in DRIVERS.values()
        for model in typing.get_args(nb.ModelName)
        if (spec := driver.model_spec(model)) is not None
    ]
    assert set(typing.get_args(nb.ModelName)) == set(CANONICAL_MODELS)
    ratios = set().union(*(s.aspect_ratios for s in specs if s.aspect_ratios is not None))
    assert set(typing.get_args(nb.AspectRatio)) == ratios
    resolutions = set().union(*(s.resolutions for s in specs))
    assert {r.upper() for r in typing.get_args(nb.Resolution)} == resolutions
    formats = set().union(*(s.output_formats for s in specs))
    assert {normalize_format(f) for f in typing.get_args(nb.OutputFormat)} == formats


@pytest.mark.parametrize(
    "url",
    [
        "https://img.test/a.png",
        "http://127.0.0.1:8080/x?y=1#z",
        "https://h",
        "HTTPS://img.test/a.png",
        "https:///no-host",
        "https://?q",
        "https://\t/x",
        "https://[::1]/x",
        "https://[::1/x",
        "https://bad]/x",
        "https://ex\u00e4mple.test/x",
        "https://example.test\uff0fx",
        "ftp://img.test/a.png",
        "httpx://img.test",
        "//img.test/a.png",
        " https://img.test/a.png",
        "",
    ],
)
def test_is_http_url_agrees_with_urlsplit(url: str) -> None:
    """The fast path answers as urlsplit does: http(s) scheme and a host, else False."""
    try:
        parts = urlsplit(url)
        expected = parts.scheme in ("http", "https") and bool(parts.netloc)
    except ValueError:
        expected = False
    assert is_http_url(url) is expected


def test_subpackages_are_reached_from_the_package_as_before() -> None:
    """After a bare ``import nanobanana_async`` (names load on first use), ``nb.webhooks`` and
    ``nb.providers`` are there, as when the package imported them itself."""
    code = (
        "import nanobanana_async as nb; "
        "print(nb.webhooks.CallbackReceiver.__name__, sorted(nb.providers.DRIVERS)[0])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["CallbackReceiver", "apixo"]


def test_image_urls_none_is_unset_like_the_other_optional_fields() -> None:
    """image_urls=None (a JSON null, an unset option) means no reference images, as None does
    for every other optional field; it was a bare TypeError."""
    assert nb.ImageRequest(prompt="a", image_urls=None).image_urls == ()
