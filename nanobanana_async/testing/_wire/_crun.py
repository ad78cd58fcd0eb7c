"""crun.ai's server side: the ``{code, message, data}`` envelope with errors in the body ``code``
and HTTP 200, snake_case ``input`` per model (pure, no I/O)."""

from __future__ import annotations

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
    _required_str,
    _url_list,
    spec_of,
)


class Crun(WireProtocol):
    """crun.ai: envelope; errors in the body ``code`` with HTTP 200."""

    name = "crun"
    prefix = ""
    create_routes = ("/api/v1/client/job/CreateTask",)
    status_route = "/api/v1/client/job/TaskInfo"
    balance_route = "/api/v1/client/account/balance"
    # PROTOCOLS.md 2: prompt, aspect_ratio, output_format [C, echoed]; img_urls [I];
    # resolution, google_search [3P]. Not image_urls: that is apixo's and xingchao's name.
    _input_fields: Final = frozenset(
        {"prompt", "aspect_ratio", "output_format", "img_urls", "resolution", "google_search"}
    )
    _states: Final = {
        "queued": "pending",
        "running": "running",
        "success": "success",
        "failed": "failed",
        "policy": "failed",
        "unknown": "warming_up",
    }

    def authorized(self, headers: Mapping[str, str], key: str) -> bool:
        """``x-api-key`` (any case: aiohttp's headers are case-insensitive)."""
        return headers.get("x-api-key", "") == key

    def validate(self, route: str, match: Mapping[str, str], body: object) -> Accepted:
        """model, ``input`` with prompt and the model's fields, snake_case ``callback_url``.

        Every refusal is body code 422: crun's code list has "422: Validation Error" and no 400.
        """
        try:
            return self._validate(body)
        except RejectError as exc:
            raise RejectError(422, exc.message) from None

    def _validate(self, body: object) -> Accepted:
        obj = _obj(body, "body")
        _only(obj, frozenset({"model", "input", "callback_url"}), code=422)
        model = _required_str(obj, "model")
        spec = spec_of(self.name, model)
        if spec is None:
            raise RejectError(422, f"Unsupported model: {model}")
        model_input = _obj(obj.get("input"), "input")
        _only(model_input, self._input_fields, "input.", code=422)
        # The model's rules are the drivers' table's (spec_of): nothing else is refused.
        prompt = _prompt(model_input, spec.max_prompt, "input.")
        ratio = _optional_str(model_input, "aspect_ratio", spec.aspect_ratios)
        if spec.output_formats:
            # Seed 002, the -v2 channels: "output_format is not supported and may be ignored".
            _optional_str(model_input, "output_format", frozenset(spec.output_formats.values()))
        _url_list(model_input, "img_urls", spec.max_images)
        if spec.resolutions:
            _optional_str(model_input, "resolution", spec.resolutions)
        elif "resolution" in model_input:
            raise RejectError(422, "resolution is not supported by this model")
        if "google_search" in model_input and not spec.google_search:
            raise RejectError(422, f"google_search is not supported by {model}")
        _optional_bool(model_input, "google_search")
        callback = _callback(obj, "callback_url", required=False)
        return Accepted(model=model, prompt=prompt, aspect_ratio=ratio, callback_url=callback)

    def status_task_id(self, match: Mapping[str, str], query: Mapping[str, str]) -> str:
        """``?task_id=``."""
        return query.get("task_id", "")

    def created(self, view: TaskView) -> tuple[int, dict[str, object]]:
        """``data.task_id``."""
        return 200, {"code": 200, "message": "success", "data": {"task_id": view.task_id}}

    def _data(self, view: TaskView) -> dict[str, object]:
        result: dict[str, object] | None = None
        if view.state == "success":
            result = {"code": 200, "message": "success", "media_urls": [view.image_url]}
        elif view.state in ("failed", "policy"):
            result = {
                "code": 501,
                "message": (
                    "Sensitive content detected" if view.state == "policy" else "Generation failed"
                ),
            }
        finished = view.finished_wall if result is not None else None
        return {
            "task_id": view.task_id,
            "provider": "google",
            "model_version": view.model,
            "status": self._states[view.state],
            "param": dict(view.params),
            "create_at": int(view.created_wall),
            "result": result,
            "duration_s": None if finished is None else round(finished - view.created_wall, 3),
            "complete_at": None if finished is None else int(finished),
            "source": "api",
        }

    def status(self, view: TaskView) -> tuple[int, dict[str, object]]:
        """The TaskInfo ``data`` object."""
        return 200, {"code": 200, "message": "success", "data": self._data(view)}

    def callback(self, view: TaskView) -> dict[str, object]:
        """The same structure as TaskInfo's ``data``."""
        return self._data(view)

    def balance(self, credits: float) -> tuple[int, dict[str, object]]:
        """``data.balance``."""
        return 200, {"code": 200, "message": "success", "data": {"balance": credits}}

    def maintenance(self) -> tuple[int, dict[str, object]]:
        """Body code 455, "Service Unavailable - System is currently undergoing maintenance"."""
        return self.error(455, "System is currently undergoing maintenance")

    def error(self, code: int, message: str) -> tuple[int, dict[str, object]]:
        """Whether HTTP mirrors ``code`` is [?]: HTTP 200 is the harder case, so it is used."""
        return 200, {"code": code, "message": message, "data": None}
