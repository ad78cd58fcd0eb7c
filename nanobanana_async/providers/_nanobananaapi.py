"""nanobananaapi.ai: the model is chosen by endpoint, the outcome by ``successFlag``
(pure, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

import attrs

from .._http import HttpRequest, HttpResponse
from .._models import CallbackHint, ImageRequest, TaskRef, TaskState, TaskStatus
from ._answers import (
    drop_none,
    looks_like_content_policy,
    no_balance,
    open_envelope,
    require_mapping,
    same_task,
    structure,
)
from ._base import (
    ALL_RESOLUTIONS,
    RATIOS_CLASSIC,
    RATIOS_CLASSIC_AUTO,
    RATIOS_NB2,
    AuthScheme,
    ModelSpec,
    normalize_format,
    normalize_resolution,
)

# Sources: seed 003 (generate-2) and PROTOCOLS.md section 3 for generate and generate-pro [C].
_MODELS: Final = {
    # generate: "image_size ... 1:1 9:16 16:9 3:4 4:3 3:2 2:3 5:4 4:5 21:9", "callBackUrl
    # (required)", "numImages 1–4", "watermark (text)", no resolution field. No image or
    # prompt cap is documented: none is checked.
    "nano-banana": ModelSpec(
        wire_id="nano-banana",
        resolutions=frozenset(),
        aspect_ratios=RATIOS_CLASSIC,
        max_images=None,
        max_prompt=None,
        callback_required=True,
        num_images=4,
        watermark=True,
    ),
    # Seed 003: "prompt: Text prompt (required), up to 20,000 characters", "imageUrls ... up
    # to 14 images", "aspectRatio ... Supported: 1:1, 1:4, 1:8, 2:3, 3:2, 3:4, 4:1, 4:3, 4:5,
    # 5:4, 8:1, 9:16, 16:9, 21:9, auto", "resolution ... one of 1K / 2K / 4K", "googleSearch",
    # "outputFormat: Output format, either png or jpg".
    "nano-banana-2": ModelSpec(
        wire_id="nano-banana-2",
        resolutions=ALL_RESOLUTIONS,
        aspect_ratios=RATIOS_NB2,
        max_images=14,
        max_prompt=20_000,
        output_formats={"png": "png", "jpeg": "jpg"},
        google_search=True,
    ),
    # generate-pro: "imageUrls (<= 8), resolution 1K|2K|4K, aspectRatio (1:1 2:3 3:2 3:4 4:3
    # 4:5 5:4 9:16 16:9 21:9 auto), callBackUrl (described as required). No
    # outputFormat/googleSearch." No prompt cap is stated for pro: none is checked.
    "nano-banana-pro": ModelSpec(
        wire_id="nano-banana-pro",
        resolutions=ALL_RESOLUTIONS,
        aspect_ratios=RATIOS_CLASSIC_AUTO,
        max_images=8,
        max_prompt=None,
        callback_required=True,
    ),
}
_ENDPOINTS: Final = {
    "nano-banana": "/api/v1/nanobanana/generate",
    "nano-banana-2": "/api/v1/nanobanana/generate-2",
    "nano-banana-pro": "/api/v1/nanobanana/generate-pro",
}
# successFlag: 0 generating, 1 success, 2 creation failed, 3 generation failed.
_FLAGS: Final = {
    0: TaskState.RUNNING,
    1: TaskState.SUCCEEDED,
    2: TaskState.FAILED,
    3: TaskState.FAILED,
}


@attrs.frozen
class _Created:
    taskId: str  # noqa: N815  wire name


@attrs.frozen
class _Images:
    originImageUrl: Any = None  # noqa: N815  wire name
    # One URL as documented; how several come back (numImages > 1) is not documented
    # (PROTOCOLS.md 3, [?]), so a list of URLs is read too.
    resultImageUrl: Any = None  # noqa: N815  wire name


@attrs.frozen
class _Record:
    taskId: str  # noqa: N815  wire name
    successFlag: int  # noqa: N815  wire name
    response: _Images | None = None
    errorCode: Any = None  # noqa: N815  wire name
    errorMessage: str | None = None  # noqa: N815  wire name


@attrs.frozen
class _Nb1Callback:
    taskId: str  # noqa: N815  wire name


class NanoBananaApiDriver:
    """Driver for nanobananaapi.ai: three create endpoints and ``record-info``."""

    name: str = "nanobananaapi"
    auth_scheme: AuthScheme = "bearer"
    supports_callback: bool = True
    default_base_url: str = "https://api.nanobananaapi.ai"
    first_poll: float = 10.0
    poll_interval: float = 3.0
    min_check_gap: float = 0.0  # the docs set no floor between checks of one task
    # No provider-specific options are documented for this provider.
    options: Mapping[str, frozenset[str]] = MappingProxyType({})

    models: Mapping[str, ModelSpec] = MappingProxyType(_MODELS)

    def model_spec(self, model: str) -> ModelSpec | None:
        """The spec for a canonical model name (the provider has no model ids of its own)."""
        return self.models.get(model)

    def build_submit(self, request: ImageRequest) -> HttpRequest:
        """The endpoint's camelCase body (NB1 also takes ``type`` and snake_case ``image_size``)."""
        model = _MODELS[request.model].wire_id
        urls = list(request.image_urls)
        resolution = normalize_resolution(request.resolution) if request.resolution else None
        body: dict[str, object]
        if model == "nano-banana":
            body = drop_none(
                {
                    "prompt": request.prompt,
                    # The misspelt values are the literal wire values.
                    "type": "IMAGETOIAMGE" if urls else "TEXTTOIAMGE",
                    "callBackUrl": request.callback_url,
                    "numImages": request.num_images or 1,
                    "imageUrls": urls or None,
                    "image_size": request.aspect_ratio,
                    "watermark": request.watermark,
                }
            )
        elif model == "nano-banana-2":
            fmt = normalize_format(request.output_format) if request.output_format else None
            body = drop_none(
                {
                    "prompt": request.prompt,
                    "imageUrls": urls,  # [] selects text-to-image
                    "aspectRatio": request.aspect_ratio,
                    "resolution": resolution,
                    "googleSearch": request.google_search,
                    "outputFormat": _MODELS[model].output_formats[fmt] if fmt else None,
                    "callBackUrl": request.callback_url,
                }
            )
        else:
            body = drop_none(
                {
                    "prompt": request.prompt,
                    "imageUrls": urls or None,
                    "resolution": resolution,
                    "aspectRatio": request.aspect_ratio,
                    "callBackUrl": request.callback_url,
                }
            )
        return HttpRequest(method="POST", path=_ENDPOINTS[model], json=body, kind="submit")

    def parse_submit(self, response: HttpResponse, request: ImageRequest) -> TaskRef:
        """``data.taskId``."""
        data = open_envelope(response, self.name)
        created = structure(data, _Created, provider=self.name, response=response)
        return TaskRef(self.name, created.taskId, _MODELS[request.model].wire_id)

    def build_status(self, ref: TaskRef) -> HttpRequest:
        """``GET /api/v1/nanobanana/record-info?taskId=…``."""
        return HttpRequest(
            method="GET",
            path="/api/v1/nanobanana/record-info",
            params={"taskId": ref.task_id},
            kind="status",
        )

    def parse_status(self, response: HttpResponse, ref: TaskRef) -> TaskStatus:
        """Status from ``data.successFlag``; the image is ``data.response.resultImageUrl``."""
        data = open_envelope(response, self.name, task_id=ref.task_id)
        record = structure(data, _Record, provider=self.name, response=response)
        same_task(record.taskId, ref, self.name, response)
        return self._status(record)

    def _status(self, record: _Record) -> TaskStatus:
        state = _FLAGS.get(record.successFlag, TaskState.UNKNOWN)
        found = record.response.resultImageUrl if record.response else None
        urls = [found] if isinstance(found, str) else found if isinstance(found, list) else []
        failed = state is TaskState.FAILED
        return TaskStatus(
            state=state,
            raw_state=str(record.successFlag),
            urls=tuple(u for u in urls if isinstance(u, str) and u)
            if state is TaskState.SUCCEEDED
            else (),
            error_code=record.errorCode if failed else None,
            error_message=record.errorMessage if failed else None,
            content_policy=failed
            and looks_like_content_policy(record.errorCode, record.errorMessage),
        )

    def build_balance(self) -> HttpRequest | None:
        """None: the docs name no balance endpoint (PROTOCOLS.md, "Credits: not found")."""
        return None

    def parse_balance(self, response: HttpResponse) -> float:
        """Never called (no balance endpoint)."""
        return no_balance(self.name)

    def parse_callback(self, body: bytes) -> CallbackHint:
        """Both callback shapes: generate-2's record fields, and NB1's ``data.info``.

        The top-level ``code`` says the callback itself is fine (generate-2) or is the outcome
        (NB1), so it is only a claim; the confirming status check decides.
        """
        response = HttpResponse(status=200, body=body)
        decoded = response.json_object(self.name)
        data = require_mapping(decoded.get("data"), self.name, response)
        if "successFlag" in data:
            record = structure(data, _Record, provider=self.name, response=response)
            return CallbackHint(task_id=record.taskId, claimed_state=self._status(record).state)
        nb1 = structure(data, _Nb1Callback, provider=self.name, response=response)
        code = require_mapping(decoded, self.name, response).get("code")
        claimed = TaskState.SUCCEEDED if code == 200 else TaskState.FAILED
        return CallbackHint(task_id=nb1.taskId, claimed_state=claimed)
