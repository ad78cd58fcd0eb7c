"""apixo.ai: the model sits in the create and the status path, results in a JSON-encoded
string (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import quote

import attrs

from .._errors import AuthenticationError, BadResponseError, RequestRejectedError, snippet
from .._http import HttpRequest, HttpResponse, loads
from .._models import CallbackHint, ImageRequest, TaskRef, TaskState, TaskStatus
from ._answers import (
    balance_number,
    looks_like_content_policy,
    open_envelope,
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

_FORMATS: Final = {"png": "png", "jpeg": "jpeg"}
# Sources: seed 004 (nano-banana-2) and apixo's nano-banana page (PROTOCOLS.md section 4 [C]).
# No nano-banana-pro page was found in apixo's docs, so it is not offered here.
_MODELS: Final = {
    # nano-banana: "prompt (req.) 1–5 000 chars", "image_urls ... 1–5", "aspect_ratio ... 1:1
    # 4:3 3:4 3:2 2:3 4:5 5:4 9:16 16:9 21:9 auto", "output_format png / jpeg"; resolution and
    # google_search are nano-banana-2 only ("—" for nano-banana).
    "nano-banana": ModelSpec(
        wire_id="nano-banana",
        resolutions=frozenset(),
        aspect_ratios=RATIOS_CLASSIC_AUTO,
        max_images=5,
        max_prompt=5_000,
        output_formats=_FORMATS,
        # PROTOCOLS.md 4: aspect_ratio "listed as required, default 1:1".
        required={"aspect_ratio": "1:1"},
    ),
    # nano-banana-2, seed 004: "Nano Banana 2 supports up to 20,000 characters", "Up to 14
    # reference image URLs", "Choose 1K, 2K, or 4K", the aspect ratios "1:1, 1:4, 1:8, 3:2,
    # 2:3, 3:4, 4:3, 4:5, 5:4, 8:1, 9:16, 16:9, 21:9, and auto" (4:1 from the model's page in
    # PROTOCOLS.md 4: "adds 1:4 4:1 1:8 8:1"), "Use png ... or jpeg/jpg", "google_search:
    # Optional boolean".
    "nano-banana-2": ModelSpec(
        wire_id="nano-banana-2",
        resolutions=ALL_RESOLUTIONS,
        aspect_ratios=RATIOS_NB2,
        max_images=14,
        max_prompt=20_000,
        output_formats=_FORMATS,
        google_search=True,
        # PROTOCOLS.md 4 marks both "required" for nano-banana-2, and states no default for
        # either. Sent when the request has none: "auto", the ratio the model chooses (seed
        # 004's set includes it; an omitted ratio means "the model uses its default" in seed
        # 001), and "1K", this model's documented default resolution (seed 001: "Defaults to
        # 1k for all models"; seed 002: fixed at 1K on crun's v2 channel).
        required={"aspect_ratio": "auto", "resolution": "1K"},
    ),
}
# Quoted once: the paths of every request (a resumed task's model may be any string).
_SUBMIT_PATHS: Final = {
    s.wire_id: f"/generateTask/{quote(s.wire_id, safe='')}" for s in _MODELS.values()
}
_STATUS_PATHS: Final = {
    s.wire_id: f"/statusTask/{quote(s.wire_id, safe='')}" for s in _MODELS.values()
}
_STATES: Final = {
    "pending": TaskState.QUEUED,
    "processing": TaskState.RUNNING,
    "success": TaskState.SUCCEEDED,
    "failed": TaskState.FAILED,
}


def _open(response: HttpResponse, provider: str, *, task_id: str | None = None) -> object:
    """:func:`open_envelope`, with HTTP 403 read as apixo's error page documents it.

    PROTOCOLS.md 4, "Errors [C]": "401 bad key · 402 insufficient balance · 403
    forbidden/content policy". A 403 is a refusal of this request (its prompt or images), not
    of the key: it must not fail every task of the account nor tell the user to fix the key
    (issue 20, item 14). 401 stays the key's refusal.
    """
    try:
        return open_envelope(response, provider, task_id=task_id)
    except AuthenticationError as exc:
        if 403 not in (exc.status, exc.code):
            raise
        raise RequestRejectedError(
            f"forbidden or refused by content policy: {exc.message}",
            provider=provider,
            status=exc.status,
            code=exc.code,
            task_id=task_id,
        ) from None


@attrs.frozen
class _Created:
    taskId: str  # noqa: N815  wire name


@attrs.frozen
class _Status:
    taskId: str  # noqa: N815  wire name
    state: str
    resultJson: str | None = None  # noqa: N815  wire name
    failCode: Any = None  # noqa: N815  wire name
    failMsg: str | None = None  # noqa: N815  wire name
    costTime: int | None = None  # noqa: N815  wire name (milliseconds)
    createTime: int | None = None  # noqa: N815  wire name (Unix milliseconds)


@attrs.frozen
class _ResultJson:
    resultUrls: list[str]  # noqa: N815  wire name


class ApixoDriver:
    """Driver for apixo.ai: ``POST /generateTask/{model}``, ``GET /statusTask/{model}``."""

    name: str = "apixo"
    auth_scheme: AuthScheme = "bearer"
    supports_callback: bool = True
    default_base_url: str = "https://api.apixo.ai/api/v1"
    # The docs: Nano Banana takes ~15-20 s; wait ~10 s, then poll every 3 s.
    first_poll: float = 10.0
    poll_interval: float = 3.0
    min_check_gap: float = 0.0  # the docs set no floor between checks of one task
    # Seed 004, Request Body: "Routing strategy: auto, value, or official" (top-level
    # ``provider``; PROTOCOLS.md 4: "auto (default, value-first with failover) · value
    # (cheapest partners) · official").
    options: Mapping[str, frozenset[str]] = MappingProxyType(
        {"provider": frozenset({"auto", "value", "official"})}
    )

    models: Mapping[str, ModelSpec] = MappingProxyType(_MODELS)

    def model_spec(self, model: str) -> ModelSpec | None:
        """The spec for ``nano-banana`` or ``nano-banana-2``."""
        return self.models.get(model)

    def build_submit(self, request: ImageRequest) -> HttpRequest:
        """The snake_case body; ``mode`` follows from the reference images."""
        spec = _MODELS[request.model]
        fmt = normalize_format(request.output_format) if request.output_format else None
        # What was asked, else what the table sends for a field the docs mark required.
        resolution = (
            normalize_resolution(request.resolution)
            if request.resolution
            else spec.required.get("resolution")
        )
        # Built field by field, optional ones only when set (left out, never null): once per
        # task, and a dict of Nones filtered again cost as much as the rest of this.
        model_input: dict[str, object] = {
            "mode": "image-to-image" if request.image_urls else "text-to-image",
            "prompt": request.prompt,
        }
        if request.image_urls:
            model_input["image_urls"] = list(request.image_urls)
        ratio = request.aspect_ratio or spec.required.get("aspect_ratio")
        if ratio is not None:
            model_input["aspect_ratio"] = ratio
        if resolution:
            model_input["resolution"] = resolution.lower()
        if fmt:
            model_input["output_format"] = _FORMATS[fmt]
        if spec.google_search and request.google_search is not None:
            model_input["google_search"] = request.google_search
        body: dict[str, object] = {}
        if request.callback_url:
            body["request_type"] = "callback"
        if request.callback_url is not None:
            body["callback_url"] = request.callback_url
        provider = request.provider_options.get("provider")
        if provider is not None:
            body["provider"] = provider
        body["input"] = model_input
        return HttpRequest(
            method="POST", path=_SUBMIT_PATHS[spec.wire_id], json=body, kind="submit"
        )

    def parse_submit(self, response: HttpResponse, request: ImageRequest) -> TaskRef:
        """``data.taskId``, kept with the model: polling needs it in the path."""
        data = _open(response, self.name)
        created = structure(data, _Created, provider=self.name, response=response)
        return TaskRef(self.name, created.taskId, _MODELS[request.model].wire_id)

    def build_status(self, ref: TaskRef) -> HttpRequest:
        """``GET /statusTask/{model}?taskId=…``."""
        path = _STATUS_PATHS.get(ref.model) or f"/statusTask/{quote(ref.model, safe='')}"
        return HttpRequest(method="GET", path=path, params={"taskId": ref.task_id}, kind="status")

    def parse_status(self, response: HttpResponse, ref: TaskRef) -> TaskStatus:
        """Status from ``data.state``; URLs from the JSON string ``data.resultJson``."""
        data = _open(response, self.name, task_id=ref.task_id)
        status = structure(data, _Status, provider=self.name, response=response)
        same_task(status.taskId, ref, self.name, response)
        return self._status(status, response)

    def _status(self, status: _Status, response: HttpResponse) -> TaskStatus:
        state = _STATES.get(status.state, TaskState.UNKNOWN)
        urls: tuple[str, ...] = ()
        if state is TaskState.SUCCEEDED and status.resultJson:
            try:
                decoded = loads(status.resultJson)
            except (ValueError, RecursionError):
                raise BadResponseError(
                    f"resultJson is not JSON: {snippet(status.resultJson)}",
                    provider=self.name,
                    status=response.status,
                    request_id=response.request_id(),
                    body=response.body,
                ) from None
            urls = tuple(
                structure(decoded, _ResultJson, provider=self.name, response=response).resultUrls
            )
        failed = state is TaskState.FAILED
        return TaskStatus(
            state=state,
            raw_state=status.state,
            urls=urls,
            error_code=status.failCode if failed else None,
            error_message=status.failMsg if failed else None,
            content_policy=failed and looks_like_content_policy(status.failCode, status.failMsg),
            elapsed=status.costTime / 1000.0 if status.costTime is not None else None,
            created=status.createTime / 1000.0 if status.createTime else None,
        )

    def build_balance(self) -> HttpRequest | None:
        """``GET /apikeys/current-balance`` (PROTOCOLS.md, apixo "Balance" [C])."""
        return HttpRequest(method="GET", path="/apikeys/current-balance", kind="other")

    def parse_balance(self, response: HttpResponse) -> float:
        """``data`` is the bare number (US dollars)."""
        return balance_number(_open(response, self.name), self.name, response)

    def parse_callback(self, body: bytes) -> CallbackHint:
        """The same envelope as a status answer (``code`` is 200 even for failed tasks)."""
        response = HttpResponse(status=200, body=body)
        decoded = response.json_object(self.name)
        data = decoded.get("data")
        if not isinstance(data, Mapping):
            data = decoded
        status = structure(data, _Status, provider=self.name, response=response)
        return CallbackHint(
            task_id=status.taskId, claimed_state=_STATES.get(status.state, TaskState.UNKNOWN)
        )
