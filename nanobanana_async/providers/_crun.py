"""crun.ai: ``{code, message, data}`` envelope, errors (even 429) in the body code, callbacks
with the TaskInfo ``data`` object (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

import attrs

from .._errors import ProviderRefusedError, ProviderUnavailableError
from .._http import HttpRequest, HttpResponse
from .._models import CallbackHint, ImageRequest, TaskRef, TaskState, TaskStatus
from ._answers import (
    balance_number,
    drop_none,
    looks_like_content_policy,
    open_envelope,
    require_mapping,
    same_task,
    structure,
)
from ._base import (
    ALL_RESOLUTIONS,
    RATIOS_CLASSIC_AUTO,
    RATIOS_NB2,
    AuthScheme,
    ModelSpec,
    normalize_format,
    normalize_resolution,
)

_NB2_FORMATS: Final = {"png": "png", "jpeg": "jpg"}
_CLASSIC_FORMATS: Final = {"png": "png", "jpeg": "jpeg"}

# crun's own Nano Banana pages (seed 002) state only the model ids and the -v2 notes; their field
# tables could not be retrieved (PROTOCOLS.md section 2). A rule below is kept only where a
# document states it for the same Google model (nanobananaapi, seed 003 and PROTOCOLS.md
# section 3; apixo, seed 004 and section 4); where the documents disagree, or none says
# anything, nothing is checked and crun decides (its refusal, 422, carries its message).
# Output-format values translate to what crun takes ([3P]); they are not a refusal source.
_CLASSIC: Final = ModelSpec(
    wire_id="google/nano-banana",
    # The classic model has no resolution (PROTOCOLS.md 5, mismatch 4: "nanobananaapi NB1 and
    # apixo nano-banana have no resolution at all").
    resolutions=frozenset(),
    # apixo's nano-banana page (PROTOCOLS.md 4): "1:1 4:3 3:4 3:2 2:3 4:5 5:4 9:16 16:9 21:9
    # auto".
    aspect_ratios=RATIOS_CLASSIC_AUTO,
    # apixo caps this model at 5 images and 5,000 characters, nanobananaapi states none: the
    # documents disagree, so crun decides.
    max_images=None,
    max_prompt=None,
    output_formats=_CLASSIC_FORMATS,
)
_NB2: Final = ModelSpec(
    wire_id="google/nano-banana-2",
    # Seed 003 and seed 004 for the same model: "resolution: Output quality level, one of 1K /
    # 2K / 4K", "Supports up to 14 reference images", "up to 20,000 characters", the aspect
    # ratios "1:1, 1:4, 1:8, 2:3, 3:2, 3:4, 4:1, 4:3, 4:5, 5:4, 8:1, 9:16, 16:9, 21:9, auto",
    # and "googleSearch: Whether to enable Google Web Search grounding".
    resolutions=ALL_RESOLUTIONS,
    aspect_ratios=RATIOS_NB2,
    max_images=14,
    max_prompt=20_000,
    output_formats=_NB2_FORMATS,
    google_search=True,
)
# Pro: nanobananaapi's pro page (PROTOCOLS.md 3) allows 8 images and the classic ratios, what
# crun's clients send ([3P]) follows NB2's 14 and extreme ratios: the sources disagree, so
# neither is checked. "No outputFormat/googleSearch" on that page; crun's clients send an
# output format, so only Google Search is refused. No document states a prompt cap for pro
# (NB2's 20,000 is NB2's): none is checked.
_PRO: Final = attrs.evolve(
    _NB2,
    wire_id="google/nano-banana-pro",
    aspect_ratios=None,
    max_images=None,
    max_prompt=None,
    google_search=False,
)
# The -v2 channels, seed 002: "Parameter compatibility notes for google/nano-banana-v2:
# output_format is not supported and may be ignored. Resolution is currently fixed to 1K on v2
# channel." PROTOCOLS.md 2 extends the output_format note to every -v2 channel [C]; the 1K
# note is stated for google/nano-banana-v2 only, so the other -v2 channels are not held to it.
# Google Search is refused only where a document says so for the model (nanobananaapi's pro
# page: "No outputFormat/googleSearch"); crun's clients' "-v2 and lite reject it" is [3P].
_MODELS: Final = {
    "nano-banana": _CLASSIC,
    "nano-banana-2": _NB2,
    "nano-banana-pro": _PRO,
    "google/nano-banana": _CLASSIC,
    "google/nano-banana-2": _NB2,
    "google/nano-banana-pro": _PRO,
    "google/nano-banana-v2": attrs.evolve(
        _CLASSIC,
        wire_id="google/nano-banana-v2",
        resolutions=frozenset({"1K"}),
        output_formats={},
    ),
    "google/nano-banana-2-v2": attrs.evolve(
        _NB2, wire_id="google/nano-banana-2-v2", output_formats={}
    ),
    "google/nano-banana-pro-v2": attrs.evolve(
        _PRO, wire_id="google/nano-banana-pro-v2", output_formats={}
    ),
    # Lite is known from clients only ([3P]: "NB2-lite <= 10"): no cap is checked.
    "google/nano-banana-2-lite": attrs.evolve(
        _NB2, wire_id="google/nano-banana-2-lite", max_images=None
    ),
}

# Body codes that answer a create with "not created". Source: seed 002 (docs.crun.ai
# google/nano-banana), "Response status code": "455: Service Unavailable - System is currently
# undergoing maintenance", "501: Generation Failed - Content generation task failed", "505:
# Feature Disabled - The requested feature is currently disabled". The value says whether the
# same create may be accepted later. The same list's 401, 402, 422 and 429 map to
# AuthenticationError, InsufficientCreditsError, APIError and RateLimitError (all "not created").
_CREATE_REFUSALS: Final = {455: True, 501: False, 505: False}
# The same list answered on a status check (TaskInfo): 501 "Generation Failed - Content
# generation task failed" and 505 "Feature Disabled - The requested feature is currently
# disabled" say this task will not make an image, so it ends now with GenerationFailedError
# (its code kept), not retried as a passing 5xx until its deadline (issue 20, item 13).
_STATUS_ENDINGS: Final = frozenset({501, 505})

_STATES: Final = {
    "pending": TaskState.QUEUED,
    "queued": TaskState.QUEUED,
    "waiting": TaskState.QUEUED,
    "running": TaskState.RUNNING,
    "processing": TaskState.RUNNING,
    "success": TaskState.SUCCEEDED,
    "failed": TaskState.FAILED,
}


@attrs.frozen
class _Created:
    task_id: str


@attrs.frozen
class _Result:
    media_urls: list[str] | None = None
    code: Any = None
    message: str | None = None


@attrs.frozen
class _TaskInfo:
    task_id: str
    status: str
    result: _Result | None = None
    duration_s: float | None = None


class CrunDriver:
    """Driver for crun.ai: ``CreateTask`` and the unified ``TaskInfo``."""

    name: str = "crun"
    auth_scheme: AuthScheme = "x-api-key"
    supports_callback: bool = True
    default_base_url: str = "https://api.crun.ai"
    first_poll: float = 10.0
    poll_interval: float = 3.0
    min_check_gap: float = 0.0  # the docs set no floor between checks of one task
    # No provider-specific options are documented for this provider.
    options: Mapping[str, frozenset[str]] = MappingProxyType({})

    models: Mapping[str, ModelSpec] = MappingProxyType(_MODELS)

    def model_spec(self, model: str) -> ModelSpec | None:
        """The spec for a canonical name or a crun model id (``google/...``)."""
        return self.models.get(model)

    def build_submit(self, request: ImageRequest) -> HttpRequest:
        """``POST /api/v1/client/job/CreateTask`` with the parameters under ``input``."""
        spec = _MODELS[request.model]
        fmt = normalize_format(request.output_format) if request.output_format else None
        model_input = drop_none(
            {
                "prompt": request.prompt,
                "aspect_ratio": request.aspect_ratio,
                "output_format": spec.output_formats[fmt] if fmt else None,
                "img_urls": list(request.image_urls) or None,
                "resolution": (
                    normalize_resolution(request.resolution) if request.resolution else None
                ),
                "google_search": request.google_search if spec.google_search else None,
            }
        )
        body = drop_none(
            {"model": spec.wire_id, "input": model_input, "callback_url": request.callback_url}
        )
        return HttpRequest(
            method="POST", path="/api/v1/client/job/CreateTask", json=body, kind="submit"
        )

    def parse_submit(self, response: HttpResponse, request: ImageRequest) -> TaskRef:
        """``data.task_id``; a body code other than 200 raises (429 in the body included).

        Raises:
            ProviderRefusedError: body code 455, 501 or 505, which the docs list as refusals.
        """
        try:
            data = open_envelope(response, self.name)
        except ProviderUnavailableError as exc:
            code = exc.code if isinstance(exc.code, int) else None
            if code is None or code not in _CREATE_REFUSALS:
                raise
            raise ProviderRefusedError(
                exc.message,
                provider=self.name,
                status=exc.status,
                code=code,
                retryable=_CREATE_REFUSALS[code],
                request_id=exc.request_id,
                body=exc.body,
            ) from None
        created = structure(data, _Created, provider=self.name, response=response)
        return TaskRef(self.name, created.task_id, _MODELS[request.model].wire_id)

    def build_status(self, ref: TaskRef) -> HttpRequest:
        """``GET /api/v1/client/job/TaskInfo?task_id=…``."""
        return HttpRequest(
            method="GET",
            path="/api/v1/client/job/TaskInfo",
            params={"task_id": ref.task_id},
            kind="status",
        )

    def parse_status(self, response: HttpResponse, ref: TaskRef) -> TaskStatus:
        """Status from ``data.status``; images from ``data.result.media_urls``."""
        try:
            data = open_envelope(response, self.name, task_id=ref.task_id)
        except ProviderUnavailableError as exc:
            if exc.code not in _STATUS_ENDINGS:
                raise
            return TaskStatus(
                state=TaskState.FAILED,
                raw_state=f"code {exc.code}",
                error_code=exc.code,
                error_message=exc.message or None,
                content_policy=looks_like_content_policy(exc.code, exc.message),
            )
        info = structure(data, _TaskInfo, provider=self.name, response=response)
        same_task(info.task_id, ref, self.name, response)
        return self._status(info)

    def _status(self, info: _TaskInfo) -> TaskStatus:
        state = _STATES.get(info.status, TaskState.UNKNOWN)
        result = info.result or _Result()
        failed = state is TaskState.FAILED
        return TaskStatus(
            state=state,
            raw_state=info.status,
            urls=tuple(result.media_urls or ()) if state is TaskState.SUCCEEDED else (),
            error_code=result.code if failed else None,
            error_message=result.message if failed else None,
            content_policy=failed and looks_like_content_policy(result.code, result.message),
            elapsed=info.duration_s,
        )

    def build_balance(self) -> HttpRequest | None:
        """``GET /api/v1/client/account/balance`` (PROTOCOLS.md, from
        https://docs.crun.ai/common-api/get-account-credits)."""
        return HttpRequest(method="GET", path="/api/v1/client/account/balance", kind="other")

    def parse_balance(self, response: HttpResponse) -> float:
        """``data.balance``, in credits."""
        data = require_mapping(open_envelope(response, self.name), self.name, response)
        return balance_number(data.get("balance"), self.name, response)

    def parse_callback(self, body: bytes) -> CallbackHint:
        """The TaskInfo ``data`` object, bare or wrapped in ``{data: …}``."""
        response = HttpResponse(status=200, body=body)
        obj: Mapping[str, object] = response.json_object(self.name)
        inner = obj.get("data")
        if "task_id" not in obj and isinstance(inner, Mapping):
            obj = inner
        info = structure(obj, _TaskInfo, provider=self.name, response=response)
        return CallbackHint(task_id=info.task_id, claimed_state=self._status(info).state)
