"""apixo.ai's server side: the model in the path, ``resultJson`` as a JSON string, the HTTP
status mirroring ``code`` (pure, no I/O)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

from ._base import (
    Accepted,
    RejectError,
    TaskView,
    WireProtocol,
    _callback,
    _obj,
    _only,
    _optional_bool,
    _optional_str,
    _prompt,
    _url_list,
    spec_of,
)


class Apixo(WireProtocol):
    """apixo.ai: model in the path; ``resultJson`` is a JSON string; HTTP mirrors ``code``."""

    name = "apixo"
    prefix = "/api/v1"
    create_routes = ("/generateTask/{model}",)
    status_route = "/statusTask/{model}"
    balance_route = "/apikeys/current-balance"
    # PROTOCOLS.md 4, "Errors [C]": "403 forbidden/content policy".
    content_refusal = 403
    _states: Final = {
        "queued": "pending",
        "running": "processing",
        "success": "success",
        "failed": "failed",
        "policy": "failed",
        "unknown": "warming_up",
    }

    def validate(self, route: str, match: Mapping[str, str], body: object) -> Accepted:
        """request_type/callback_url/provider and the model's snake_case ``input``."""
        model = match.get("model", "")
        spec = spec_of(self.name, model)
        if spec is None:
            raise RejectError(404, f"Unknown model: {model}")
        obj = _obj(body, "body")
        _only(obj, frozenset({"request_type", "callback_url", "provider", "input"}))
        request_type = obj.get("request_type", "async")
        if request_type not in ("async", "callback"):
            raise RejectError(400, "request_type must be async or callback")
        callback = _callback(obj, "callback_url", required=request_type == "callback")
        if obj.get("provider", "auto") not in ("auto", "value", "official"):
            raise RejectError(400, "provider must be auto, value or official")
        model_input = _obj(obj.get("input"), "input")
        # The model's rules are the drivers' table's (spec_of): nothing else is refused.
        # PROTOCOLS.md 4: resolution and google_search are nano-banana-2's only ("—").
        fields = {"mode", "prompt", "image_urls", "aspect_ratio", "output_format"}
        fields |= {"resolution"} if spec.resolutions else set()
        fields |= {"google_search"} if spec.google_search else set()
        _only(model_input, frozenset(fields), "input.")
        mode = model_input.get("mode")
        if mode not in ("text-to-image", "image-to-image"):
            raise RejectError(400, "Missing required field: input.mode")
        prompt = _prompt(model_input, spec.max_prompt, "input.")
        urls = _url_list(model_input, "image_urls", spec.max_images)
        if mode == "image-to-image" and not urls:
            raise RejectError(400, "image-to-image needs input.image_urls")
        for key in spec.required:
            if model_input.get(key) is None:
                raise RejectError(400, f"Missing required field: input.{key}")
        ratio = _optional_str(model_input, "aspect_ratio", spec.aspect_ratios)
        resolution = model_input.get("resolution")
        # Seed 004: "parameter is case-insensitive (e.g. 2k or 2K both valid)".
        if resolution is not None and (
            not isinstance(resolution, str) or resolution.upper() not in spec.resolutions
        ):
            raise RejectError(400, "Invalid field: input.resolution")
        # Seed 004: "jpeg/jpg for smaller files (jpg is normalized to jpeg)", on nano-banana-2.
        formats = set(spec.output_formats.values()) | ({"jpg"} if spec.resolutions else set())
        _optional_str(model_input, "output_format", frozenset(formats))
        _optional_bool(model_input, "google_search")
        return Accepted(model=model, prompt=prompt, aspect_ratio=ratio, callback_url=callback)

    def status_task_id(self, match: Mapping[str, str], query: Mapping[str, str]) -> str:
        """``?taskId=``."""
        return query.get("taskId", "")

    def created(self, view: TaskView) -> tuple[int, dict[str, object]]:
        """``data.taskId``."""
        return 200, {"code": 200, "message": "success", "data": {"taskId": view.task_id}}

    def _data(self, view: TaskView) -> dict[str, object]:
        data: dict[str, object] = {
            "taskId": view.task_id,
            "state": self._states[view.state],
            "createTime": int(view.created_wall * 1000),
        }
        if view.state == "success":
            data["resultJson"] = json.dumps({"resultUrls": [view.image_url]})
        elif view.state == "policy":
            data["failCode"], data["failMsg"] = "CONTENT_VIOLATION", "Content violates guidelines"
        elif view.state == "failed":
            data["failCode"], data["failMsg"] = "GENERATION_FAILED", "Generation failed"
        if view.finished_wall is not None and view.state in ("success", "failed", "policy"):
            data["completeTime"] = int(view.finished_wall * 1000)
            data["costTime"] = int((view.finished_wall - view.created_wall) * 1000)
        return data

    def status(self, view: TaskView) -> tuple[int, dict[str, object]]:
        """The status envelope."""
        return 200, {"code": 200, "message": "success", "data": self._data(view)}

    def callback(self, view: TaskView) -> dict[str, object]:
        """Identical to a status answer (``code`` 200 even for failed tasks)."""
        return self.status(view)[1]

    def balance(self, credits: float) -> tuple[int, dict[str, object]]:
        """``data`` is a bare number (USD)."""
        return 200, {"code": 200, "message": "success", "data": credits}

    def error(self, code: int, message: str) -> tuple[int, dict[str, object]]:
        """``{"code", "message", "data": {"error"}}`` with the same HTTP status."""
        return code, {
            "code": code,
            "message": _APIXO_MESSAGES.get(code, "Error"),
            "data": {"error": message},
        }


_APIXO_MESSAGES: Final = {
    400: "Invalid request",
    401: "Unauthorized",
    402: "Insufficient balance",
    404: "Not found",
    403: "Forbidden",
    429: "Rate limit exceeded",
    500: "Internal server error",
    503: "Service unavailable",
}
