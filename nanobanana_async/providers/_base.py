"""What every provider driver shares: the driver protocol, the capability table, request
validation, error mapping and strict parsing of wire shapes (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal, Protocol, TypeVar

import attrs

from .._errors import (
    InvalidRequestError,
)
from .._http import HttpRequest, HttpResponse
from .._models import _NO_OPTIONS, CallbackHint, ImageRequest, TaskRef, TaskStatus

AuthScheme = Literal["bearer", "x-api-key"]
T = TypeVar("T")

CANONICAL_MODELS: Final = ("nano-banana", "nano-banana-2", "nano-banana-pro")

RATIOS_CLASSIC: Final = frozenset(
    {"1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "5:4", "4:5", "21:9"}
)
RATIOS_CLASSIC_AUTO: Final = RATIOS_CLASSIC | {"auto"}
RATIOS_NB2: Final = RATIOS_CLASSIC_AUTO | {"1:4", "4:1", "1:8", "8:1"}
ALL_RESOLUTIONS: Final = frozenset({"1K", "2K", "4K"})
# How a caller gives a callback URL a model requires; the CLI words it in its own flags.
CALLBACK_WAYS: Final = "(a per-call callback_url, or a callbacks= receiver)"


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
        required: fields a document marks required though a request may leave them out
            (``aspect_ratio``, ``resolution``) → the canonical value sent then, each with its
            source in the driver's table. The simulator refuses a create without them.

    This table is the one source of per-model rules: validation reads it before any request,
    and the simulator (``testing``) refuses exactly what it says, no more.
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
    required: Mapping[str, str] = attrs.field(factory=dict)


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
    #: every model name accepted here, canonical names and the provider's own ids → spec.
    models: Mapping[str, ModelSpec]

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
    missing = None
    if spec.callback_required and request.callback_url is None:
        errors.append(f"{where} requires a callback URL {CALLBACK_WAYS} @ $.callback_url")
        missing = {"callback_url": where}
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
    if request.provider_options is not _NO_OPTIONS:  # most requests have none: a call less
        errors.extend(_option_problems(driver, request))
    if errors:
        raise InvalidRequestError(errors, missing=missing)
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
