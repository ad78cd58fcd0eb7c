"""What every provider driver shares: the driver protocol, the capability table, request
validation, error mapping and strict parsing of wire shapes (pure, no I/O)."""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any, Final, Literal, Protocol, TypeVar

import attrs
import cattrs

from .._backoff import parse_retry_after
from .._errors import (
    APIError,
    AuthenticationError,
    BadResponseError,
    InsufficientCreditsError,
    InvalidRequestError,
    ProviderUnavailableError,
    RateLimitError,
    RequestRejectedError,
    snippet,
)
from .._http import HttpRequest, HttpResponse
from .._models import CallbackHint, ImageRequest, TaskRef, TaskStatus

AuthScheme = Literal["bearer", "x-api-key"]
T = TypeVar("T")

CANONICAL_MODELS: Final = ("nano-banana", "nano-banana-2", "nano-banana-pro")

RATIOS_CLASSIC: Final = frozenset(
    {"1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "5:4", "4:5", "21:9"}
)
RATIOS_CLASSIC_AUTO: Final = RATIOS_CLASSIC | {"auto"}
RATIOS_NB2: Final = RATIOS_CLASSIC_AUTO | {"1:4", "4:1", "1:8", "8:1"}
ALL_RESOLUTIONS: Final = frozenset({"1K", "2K", "4K"})

_CONTENT_POLICY_MARKERS: Final = (
    "policy",
    "sensitive",
    "nsfw",
    "prohibited",
    "violation",
    "flagged",
)


@attrs.frozen(kw_only=True)
class ModelSpec:
    """What one provider accepts for one model.

    Attributes:
        wire_id: the provider's model id (for nanobananaapi, the endpoint's name).
        resolutions: canonical resolutions accepted; empty when the field does not exist.
        aspect_ratios: accepted aspect ratios; None when no document states them for this
            provider and model (not checked: the provider decides).
        max_images: reference images at most, None when undocumented.
        max_prompt: prompt characters at most, None when undocumented.
        output_formats: canonical format (``png``/``jpeg``) → the provider's wire value.
        google_search: whether ``google_search`` can be sent.
        callback_required: the provider documents the callback URL as required.
        num_images: the most images one task may make, None when there is no such field.
        watermark: whether a watermark text can be sent.
    """

    wire_id: str
    resolutions: frozenset[str]
    aspect_ratios: frozenset[str] | None
    max_images: int | None
    max_prompt: int | None
    output_formats: Mapping[str, str] = attrs.field(factory=dict)
    google_search: bool = False
    callback_required: bool = False
    num_images: int | None = None
    watermark: bool = False


class ProviderDriver(Protocol):
    """Builds a provider's requests and reads its responses; holds no state and never awaits."""

    name: str
    auth_scheme: AuthScheme
    supports_callback: bool
    default_base_url: str
    first_poll: float
    poll_interval: float
    #: seconds at least between a task's create and its first check, and between checks.
    min_check_gap: float
    #: options only this provider has (``ImageRequest.provider_options``): name → values.
    options: Mapping[str, frozenset[str]]

    def model_spec(self, model: str) -> ModelSpec | None:
        """The spec for a canonical name or a provider model id, None when not sold here."""
        ...

    def build_submit(self, request: ImageRequest) -> HttpRequest:
        """The create-task request; call :func:`validate` first."""
        ...

    def parse_submit(self, response: HttpResponse, request: ImageRequest) -> TaskRef:
        """The accepted task's reference, or a typed error."""
        ...

    def build_status(self, ref: TaskRef) -> HttpRequest:
        """The status request for a task."""
        ...

    def parse_status(self, response: HttpResponse, ref: TaskRef) -> TaskStatus:
        """The task's normalized status, or a typed error."""
        ...

    def parse_callback(self, body: bytes) -> CallbackHint:
        """The task a callback body names; raises BadResponseError when it names none."""
        ...

    def build_balance(self) -> HttpRequest | None:
        """The balance request, None when the provider documents no balance endpoint."""
        ...

    def parse_balance(self, response: HttpResponse) -> float:
        """The balance's raw value, or a typed error."""
        ...


def normalize_resolution(value: str) -> str:
    """``1k`` → ``1K``; other text is returned upper-cased for the error message."""
    return value.strip().upper()


def normalize_format(value: str) -> str:
    """``jpg`` and ``JPEG`` → ``jpeg``; ``PNG`` → ``png``."""
    lowered = value.strip().lower()
    return "jpeg" if lowered == "jpg" else lowered


def validate(driver: ProviderDriver, request: ImageRequest) -> ModelSpec:
    """Check ``request`` against the provider's capability table before any I/O.

    Returns:
        the model's spec.

    Raises:
        InvalidRequestError: listing every problem, each naming its field.
    """
    spec = driver.model_spec(request.model)
    if spec is None:
        offered = ", ".join(m for m in CANONICAL_MODELS if driver.model_spec(m) is not None)
        raise InvalidRequestError(
            [
                f"model {request.model!r} is not offered by {driver.name} "
                f"(offered: {offered}) @ $.model"
            ]
        )
    errors: list[str] = []
    where = f"{driver.name} {request.model}"
    if request.resolution is not None:
        res = normalize_resolution(request.resolution)
        if not spec.resolutions:
            errors.append(f"{where} takes no resolution @ $.resolution")
        elif res not in spec.resolutions:
            allowed = ", ".join(sorted(spec.resolutions))
            errors.append(
                f"resolution {request.resolution!r} not supported by {where} "
                f"(allowed: {allowed}) @ $.resolution"
            )
    ratios = spec.aspect_ratios
    if (
        request.aspect_ratio is not None
        and ratios is not None
        and request.aspect_ratio not in ratios
    ):
        allowed = ", ".join(sorted(ratios, key=_ratio_order))
        errors.append(
            f"aspect ratio {request.aspect_ratio!r} not supported by {where} "
            f"(allowed: {allowed}) @ $.aspect_ratio"
        )
    if spec.max_images is not None and len(request.image_urls) > spec.max_images:
        errors.append(
            f"{len(request.image_urls)} reference images, {where} takes at most "
            f"{spec.max_images} @ $.image_urls"
        )
    if spec.max_prompt is not None and len(request.prompt) > spec.max_prompt:
        errors.append(
            f"prompt has {len(request.prompt)} characters, {where} takes at most "
            f"{spec.max_prompt} @ $.prompt"
        )
    if request.output_format is not None:
        fmt = normalize_format(request.output_format)
        if not spec.output_formats:
            errors.append(f"{where} takes no output format @ $.output_format")
        elif fmt not in spec.output_formats:
            allowed = ", ".join(sorted(spec.output_formats))
            errors.append(
                f"output format {request.output_format!r} not supported by {where} "
                f"(allowed: {allowed}) @ $.output_format"
            )
    if request.google_search and not spec.google_search:
        errors.append(f"{where} offers no Google Search grounding @ $.google_search")
    if request.callback_url is not None and not driver.supports_callback:
        errors.append(f"{driver.name} offers no callbacks @ $.callback_url")
    if spec.callback_required and request.callback_url is None:
        errors.append(
            f"{where} requires a callback URL (set one, or use callbacks=) @ $.callback_url"
        )
    if request.num_images is not None:
        if spec.num_images is None and request.num_images != 1:  # one is what every model makes
            errors.append(f"{where} takes no num_images (one image per task) @ $.num_images")
        elif spec.num_images is not None and request.num_images > spec.num_images:
            errors.append(
                f"num_images {request.num_images}: {where} makes 1 to {spec.num_images} "
                "@ $.num_images"
            )
    if request.watermark is not None and not spec.watermark:
        errors.append(f"{where} takes no watermark @ $.watermark")
    errors.extend(_option_problems(driver, request))
    if errors:
        raise InvalidRequestError(errors)
    return spec


def _option_problems(driver: ProviderDriver, request: ImageRequest) -> list[str]:
    problems = []
    for name, value in request.provider_options.items():
        allowed = driver.options.get(name)
        if allowed is None:
            documented = ", ".join(sorted(driver.options)) or "none"
            problems.append(
                f"{driver.name} documents no option {name!r} (documented: {documented}) "
                f"@ $.provider_options.{name}"
            )
        elif value not in allowed:
            problems.append(
                f"{driver.name} option {name} {value!r} is not documented "
                f"(allowed: {', '.join(sorted(allowed))}) @ $.provider_options.{name}"
            )
    return problems


def _ratio_order(ratio: str) -> tuple[int, float, str]:
    # Narrowest to widest (9:16 … 1:1 … 21:9), then words such as "auto".
    width, _, height = ratio.partition(":")
    if width.isdigit() and height.isdigit() and int(height) > 0:
        return (0, int(width) / int(height), ratio)
    return (1, 0.0, ratio)


def looks_like_content_policy(code: object, message: object) -> bool:
    """Whether a failure code or message names a content-policy refusal."""
    text = f"{code or ''} {message or ''}".lower()
    return any(marker in text for marker in _CONTENT_POLICY_MARKERS)


def error_for(
    provider: str,
    *,
    status: int,
    code: int | None,
    message: str,
    task_id: str | None = None,
    response: HttpResponse | None = None,
) -> APIError:
    """Map an HTTP status and the provider's body code to the typed error.

    The body code wins over the HTTP status, because crun signals errors (even 429) in the body
    with HTTP 200.
    """
    effective = code if code is not None and code != 200 else status
    cls: type[APIError] = APIError
    if effective in (401, 403):
        cls = AuthenticationError
    elif effective == 402:
        cls = InsufficientCreditsError
    elif effective in (400, 422):
        cls = RequestRejectedError
    elif effective == 429:
        retry_after = None
        if response is not None:
            retry_after = parse_retry_after(response.headers, response.received_at)
        return RateLimitError(
            message,
            provider=provider,
            status=status,
            code=code,
            retry_after=retry_after,
            task_id=task_id,
        )
    elif effective == 455 or effective >= 500:
        cls = ProviderUnavailableError
    return cls(message, provider=provider, status=status, code=code, task_id=task_id)


def _strict_str(value: object, _: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _strict_int(value: object, _: object) -> int:
    # Some providers send numeric codes as digit strings; accept those, refuse the rest.
    if isinstance(value, bool):
        raise TypeError("expected an integer, got a bool")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise TypeError(f"expected an integer, got {type(value).__name__}")


def _strict_bool(value: object, _: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected a bool, got {type(value).__name__}")
    return value


def _strict_float(value: object, _: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _is_list_type(cls: object) -> bool:
    return typing.get_origin(cls) is list


def _make_converter() -> cattrs.Converter:
    # Extra keys are tolerated (providers add fields); wrong types are not.
    converter = cattrs.Converter(forbid_extra_keys=False)

    def strict_list(value: object, cls: Any) -> list[object]:
        # cattrs would turn a string into a list of its characters.
        if not isinstance(value, list):
            raise TypeError(f"expected an array, got {type(value).__name__}")
        (item_type,) = typing.get_args(cls) or (Any,)
        return [converter.structure(item, item_type) for item in value]

    converter.register_structure_hook_func(_is_list_type, strict_list)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(bool, _strict_bool)
    converter.register_structure_hook(float, _strict_float)
    return converter


WIRE: Final = _make_converter()


def structure(data: object, cls: type[T], *, provider: str, response: HttpResponse) -> T:
    """Read ``data`` as the wire class ``cls``.

    Raises:
        BadResponseError: the shape or a type is wrong (with a snippet of the body).
    """
    try:
        return WIRE.structure(data, cls)
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError, AttributeError):
        raise BadResponseError(
            f"unexpected {cls.__name__.lstrip('_')} shape: {snippet(response.body)}",
            provider=provider,
            status=response.status,
        ) from None


def drop_none(body: Mapping[str, object]) -> dict[str, object]:
    """The JSON object without its None values (optional fields are left out, not null)."""
    return {k: v for k, v in body.items() if v is not None}


def message_of(obj: Mapping[str, object]) -> str:
    """The provider's words: the first text under the keys providers use for an error message,
    plus the detail apixo puts in ``data.error`` ("Missing required field: input.prompt")
    when the top-level message is only a category ("Invalid request")."""
    text = _first_message(obj)
    data = obj.get("data")
    detail = data.get("error") if isinstance(data, Mapping) else None
    if isinstance(detail, str) and detail and detail != text:
        return f"{text}: {detail}" if text else detail
    return text


def _first_message(obj: Mapping[str, object]) -> str:
    for key in ("message", "msg", "error", "errorMessage", "failMsg"):
        value = obj.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, Mapping):
            inner = _first_message(value)
            if inner:
                return inner
    return ""


@attrs.frozen
class Envelope:
    """``{code, message|msg, data}``, as crun, nanobananaapi and apixo wrap every answer."""

    code: int
    data: Any = None
    message: str | None = None
    msg: str | None = None


def open_envelope(response: HttpResponse, provider: str, *, task_id: str | None = None) -> object:
    """Check an enveloped answer and return its ``data``.

    Raises:
        APIError: the typed error for a non-2xx HTTP status or a body code other than 200.
        BadResponseError: the body is not an envelope.
    """
    if response.status >= 400:
        raise error_for_response(response, provider, task_id=task_id)
    body = response.json_object(provider)
    envelope = structure(body, Envelope, provider=provider, response=response)
    if envelope.code != 200:
        raise error_for(
            provider,
            status=response.status,
            code=envelope.code,
            message=message_of(body) or snippet(response.body),
            task_id=task_id,
            response=response,
        )
    return envelope.data


def error_for_response(
    response: HttpResponse, provider: str, *, task_id: str | None = None
) -> APIError:
    """The typed error for a response with an error HTTP status, reading any body it has."""
    code: int | None = None
    message = snippet(response.body)
    try:
        body = response.json_object(provider)
    except BadResponseError:
        body = None
    if body is not None:
        raw_code = body.get("code")
        if isinstance(raw_code, int) and not isinstance(raw_code, bool):
            code = raw_code
        message = message_of(body) or message
    return error_for(
        provider,
        status=response.status,
        code=code,
        message=message,
        task_id=task_id,
        response=response,
    )


def no_balance(provider: str) -> float:
    """``parse_balance`` of a provider without a balance endpoint (never called)."""
    raise AssertionError(f"{provider} has no balance endpoint; build_balance() returned None")


def balance_number(value: object, provider: str, response: HttpResponse) -> float:
    """``value`` as a balance, or BadResponseError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadResponseError(
            f"expected a number as the balance: {snippet(response.body)}",
            provider=provider,
            status=response.status,
        )
    return float(value)


def require_mapping(value: object, provider: str, response: HttpResponse) -> Mapping[str, object]:
    """``value`` as a JSON object, or BadResponseError."""
    if not isinstance(value, Mapping):
        raise BadResponseError(
            f"expected an object in the answer: {snippet(response.body)}",
            provider=provider,
            status=response.status,
        )
    return value
