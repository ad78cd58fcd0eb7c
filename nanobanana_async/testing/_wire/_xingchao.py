"""xingchaoyiqing's server side: no envelope, ``status`` strings, a create refused on content
answered as a failed task (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from ._base import (
    Accepted,
    RejectError,
    TaskView,
    WireProtocol,
    _obj,
    _only,
    _optional_str,
    _prompt,
    _required_str,
    _url_list,
    spec_of,
)


class Xingchao(WireProtocol):
    """xingchaoyiqing: no envelope; ``status`` queued/processing/completed/failed."""

    name = "xingchao"
    prefix = "/kyyReactApiServer"
    refuses_at_create = True
    create_routes = ("/v1/banana/images",)
    status_route = "/v1/result/{task_id}"
    _states: Final = {
        "queued": "queued",
        "running": "processing",
        "success": "completed",
        "failed": "failed",
        "policy": "failed",
        "unknown": "warming_up",
    }

    _fields: Final = frozenset({"model", "prompt", "resolution", "size", "image_urls"})

    def validate(self, route: str, match: Mapping[str, str], body: object) -> Accepted:
        """model, prompt, lower-case resolution, size and image_urls, each model's rules from
        the drivers' table (``spec_of``; the docs' own example sends nano-banana-2 at 2k
        against their resolution table, so nano-banana-2 takes 2k/4k there and here)."""
        obj = _obj(body, "body")
        _only(obj, self._fields)
        model = _required_str(obj, "model")
        spec = spec_of(self.name, model)
        if spec is None:
            raise RejectError(400, f"Unknown model: {model}")
        prompt = _prompt(obj, spec.max_prompt)
        lower = frozenset(r.lower() for r in spec.resolutions)
        resolution = _optional_str(obj, "resolution", frozenset({"1k", "2k", "4k"}))
        if resolution is not None and resolution not in lower:
            raise RejectError(400, f"{resolution} is not supported by {model}")
        size = _optional_str(obj, "size", spec.aspect_ratios)
        _url_list(obj, "image_urls", spec.max_images)
        return Accepted(model=model, prompt=prompt, aspect_ratio=size, callback_url=None)

    def status_task_id(self, match: Mapping[str, str], query: Mapping[str, str]) -> str:
        """The id is in the path."""
        return match["task_id"]

    def created(self, view: TaskView) -> tuple[int, dict[str, object]]:
        """``{id, object, created, model, status}``; a create refused on content answers in
        the same shape with ``status: "failed"`` and ``error`` (the docs' Failure Response)."""
        answer: dict[str, object] = {
            "id": view.task_id,
            "object": "nanobanana",
            "created": int(view.created_wall),
            "model": view.model,
            "status": "queued",
        }
        if view.state == "policy":
            answer["status"] = "failed"
            answer["error"] = "Invalid prompt: content policy violation"
        return 200, answer

    def status(self, view: TaskView) -> tuple[int, dict[str, object]]:
        """``image_url`` only when completed, ``error`` only when failed."""
        failed = view.state in ("failed", "policy")
        error = None
        if failed:
            error = (
                "Invalid prompt: content policy violation"
                if view.state == "policy"
                else "Image generation failed"
            )
        return 200, {
            "id": view.task_id,
            "object": "image.generation",
            "created": int(view.created_wall),
            "model": view.model,
            "status": self._states[view.state],
            "image_url": view.image_url if view.state == "success" else None,
            "error": error,
        }

    def error(self, code: int, message: str) -> tuple[int, dict[str, object]]:
        """The HTTP error body is undocumented [?]; an OpenAI-like object is used."""
        return code, {"error": {"message": message, "code": code}}

    def body_429(self) -> tuple[int, dict[str, object]]:
        """No envelope to carry a code: a plain HTTP 429."""
        return self.error(429, "Rate limited")
