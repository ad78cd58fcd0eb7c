"""xingchaoyiqing (KYY backend): no envelope, one image URL, no callbacks (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final
from urllib.parse import quote

import attrs

from .._errors import ContentPolicyError, GenerationFailedError
from .._http import HttpRequest, HttpResponse
from .._models import CallbackHint, ImageRequest, TaskRef, TaskState, TaskStatus
from ._answers import (
    drop_none,
    error_for_response,
    looks_like_content_policy,
    no_balance,
    same_task,
    structure,
)
from ._base import (
    ALL_RESOLUTIONS,
    RATIOS_CLASSIC,
    AuthScheme,
    ModelSpec,
    normalize_resolution,
)

_ONE_K: Final = frozenset({"1K"})


def _spec(wire_id: str, resolutions: frozenset[str]) -> ModelSpec:
    # Every rule's source is seed 001 (docs.xingchaoyiqing.com, nano-banana-create):
    # - aspect ratios, "size ... Supported values: 1:1, 16:9, 9:16, 4:3, 3:4, 3:2, 2:3, 5:4,
    #   4:5, 21:9" (no "auto");
    # - "image_urls ... You may provide up to 6 images";
    # - the prompt has no documented maximum, so none is checked;
    # - "Request Parameters" lists only model, prompt, resolution, size and image_urls: no
    #   output format, Google Search or callback can be sent (ModelSpec's defaults).
    return ModelSpec(
        wire_id=wire_id,
        resolutions=resolutions,
        aspect_ratios=RATIOS_CLASSIC,
        max_images=6,
        max_prompt=None,
    )


# Resolutions, seed 001: "2k ... (supported by nano-banana-pro and nano-banana-pro-stable)" and
# "nano-banana, nano-banana-2, and nano-banana-2-stable have limited resolution capability —
# use 1k for these models". The same page's create example sends "model": "nano-banana-2" with
# "resolution": "2k": the docs contradict themselves for nano-banana-2, so xingchao decides.
_MODELS: Final = {
    "nano-banana": _spec("nano-banana", _ONE_K),
    "nano-banana-2": _spec("nano-banana-2", ALL_RESOLUTIONS),
    "nano-banana-pro": _spec("nano-banana-pro", ALL_RESOLUTIONS),
    "nano-banana-2-stable": _spec("nano-banana-2-stable", _ONE_K),
    "nano-banana-pro-stable": _spec("nano-banana-pro-stable", ALL_RESOLUTIONS),
}

_STATES: Final = {
    "queued": TaskState.QUEUED,
    "processing": TaskState.RUNNING,
    "completed": TaskState.SUCCEEDED,
    "failed": TaskState.FAILED,
}


@attrs.frozen
class _Task:
    id: str
    status: str
    image_url: str | None = None
    error: str | None = None


def _task_object(body: dict[str, object]) -> object:
    # Some integrators see the task under a "data" wrapper; the documented shape has none.
    data = body.get("data")
    if "id" not in body and isinstance(data, dict):
        return data
    return body


class XingchaoDriver:
    """Driver for xingchaoyiqing: ``POST /v1/banana/images``, ``GET /v1/result/{id}``."""

    name: str = "xingchao"
    auth_scheme: AuthScheme = "bearer"
    supports_callback: bool = False
    default_base_url: str = "https://zcbservice.aizfw.cn/kyyReactApiServer"
    # The docs advise polling every 2-5 s.
    first_poll: float = 5.0
    poll_interval: float = 3.0
    # Seed 001 (xingchao docs): "Check the task status every 2–5 seconds. Polling too
    # frequently may result in rate limiting": 2 s is the floor between checks of one task.
    min_check_gap: float = 2.0
    # No provider-specific options are documented for this provider.
    options: Mapping[str, frozenset[str]] = MappingProxyType({})

    models: Mapping[str, ModelSpec] = MappingProxyType(_MODELS)

    def model_spec(self, model: str) -> ModelSpec | None:
        """The spec for a canonical name or a xingchao model id."""
        return self.models.get(model)

    def build_submit(self, request: ImageRequest) -> HttpRequest:
        """The create request; the aspect ratio goes in ``size``, resolution lower-case."""
        spec = _MODELS[request.model]
        body = drop_none(
            {
                "model": spec.wire_id,
                "prompt": request.prompt,
                "resolution": (
                    normalize_resolution(request.resolution).lower() if request.resolution else None
                ),
                "size": request.aspect_ratio,
                "image_urls": list(request.image_urls) or None,
            }
        )
        return HttpRequest(method="POST", path="/v1/banana/images", json=body, kind="submit")

    def parse_submit(self, response: HttpResponse, request: ImageRequest) -> TaskRef:
        """The task reference; a create answered ``failed`` raises the failure at once."""
        if response.status >= 400:
            raise error_for_response(response, self.name)
        body = response.json_object(self.name)
        task = structure(_task_object(body), _Task, provider=self.name, response=response)
        ref = TaskRef(self.name, task.id, _MODELS[request.model].wire_id)
        if task.status == "failed":
            cls = (
                ContentPolicyError
                if looks_like_content_policy(None, task.error)
                else GenerationFailedError
            )
            raise cls(
                task.error or "failed", task_id=ref.task_id, provider=self.name, model=ref.model
            )
        return ref

    def build_status(self, ref: TaskRef) -> HttpRequest:
        """``GET /v1/result/{id}``."""
        return HttpRequest(
            method="GET", path=f"/v1/result/{quote(ref.task_id, safe='')}", kind="status"
        )

    def parse_status(self, response: HttpResponse, ref: TaskRef) -> TaskStatus:
        """Status from ``status``; the single ``image_url`` becomes a one-element tuple."""
        if response.status >= 400:
            raise error_for_response(response, self.name, task_id=ref.task_id)
        body = response.json_object(self.name)
        task = structure(_task_object(body), _Task, provider=self.name, response=response)
        same_task(task.id, ref, self.name, response)
        state = _STATES.get(task.status, TaskState.UNKNOWN)
        return TaskStatus(
            state=state,
            raw_state=task.status,
            urls=(task.image_url,) if state is TaskState.SUCCEEDED and task.image_url else (),
            error_message=task.error if state is TaskState.FAILED else None,
            content_policy=state is TaskState.FAILED
            and looks_like_content_policy(None, task.error),
        )

    def build_balance(self) -> HttpRequest | None:
        """None: the docs name no balance endpoint (PROTOCOLS.md, "Credits: not found")."""
        return None

    def parse_balance(self, response: HttpResponse) -> float:
        """Never called (no balance endpoint)."""
        return no_balance(self.name)

    def parse_callback(self, body: bytes) -> CallbackHint:
        """xingchao sends no callbacks."""
        raise NotImplementedError("xingchao offers no callbacks")
