"""nanobananaapi.ai's server side: the model chosen by the endpoint, camelCase fields,
``successFlag`` 0-3 and the two callback shapes (pure, no I/O)."""

from __future__ import annotations

import json
import math
import time
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


class NanoBananaApi(WireProtocol):
    """nanobananaapi.ai: model by endpoint; ``successFlag`` 0-3; ``msg`` on record-info."""

    name = "nanobananaapi"
    prefix = ""
    create_routes = (
        "/api/v1/nanobanana/generate",
        "/api/v1/nanobanana/generate-2",
        "/api/v1/nanobanana/generate-pro",
    )
    status_route = "/api/v1/nanobanana/record-info"
    _flags: Final = {
        "queued": 0,
        "running": 0,
        "success": 1,
        "failed": 3,
        "policy": 3,
        "unknown": 7,
    }
    # PROTOCOLS.md 3 (seed 003 for generate-2): each endpoint's documented body.
    _fields: Final = {
        "generate": frozenset(
            {"prompt", "type", "callBackUrl", "numImages", "imageUrls", "watermark", "image_size"}
        ),
        "generate-2": frozenset(
            {
                "prompt",
                "imageUrls",
                "aspectRatio",
                "resolution",
                "googleSearch",
                "outputFormat",
                "callBackUrl",
            }
        ),
        "generate-pro": frozenset(
            {"prompt", "imageUrls", "resolution", "aspectRatio", "callBackUrl"}
        ),
    }

    def validate(self, route: str, match: Mapping[str, str], body: object) -> Accepted:
        """Each endpoint's camelCase fields; NB1 needs ``type`` and ``callBackUrl``."""
        obj = _obj(body, "body")
        endpoint = route.rsplit("/", 1)[-1]
        _only(obj, self._fields[endpoint])
        # The endpoint names the model; its rules are the drivers' table's (spec_of).
        model = {"generate": "nano-banana", "generate-2": "nano-banana-2"}.get(
            endpoint, "nano-banana-pro"
        )
        spec = spec_of(self.name, model)
        assert spec is not None, model  # every endpoint has its row
        prompt = _prompt(obj, spec.max_prompt)
        urls = _url_list(obj, "imageUrls", spec.max_images)
        callback = _callback(obj, "callBackUrl", required=spec.callback_required)
        if endpoint == "generate":
            kind = obj.get("type")
            if kind not in ("TEXTTOIAMGE", "IMAGETOIAMGE"):
                raise RejectError(400, "type must be TEXTTOIAMGE or IMAGETOIAMGE")
            if kind == "IMAGETOIAMGE" and not urls:
                raise RejectError(400, "IMAGETOIAMGE needs imageUrls")
            num = obj.get("numImages", 1)
            most = spec.num_images or 1
            if isinstance(num, bool) or not isinstance(num, int) or not 1 <= num <= most:
                raise RejectError(400, f"numImages must be 1-{most}")
            ratio = _optional_str(obj, "image_size", spec.aspect_ratios)
            if obj.get("watermark") is not None and not isinstance(obj["watermark"], str):
                raise RejectError(400, "watermark must be text")
        else:
            ratio = _optional_str(obj, "aspectRatio", spec.aspect_ratios)
            _optional_str(obj, "resolution", spec.resolutions)
            if endpoint == "generate-2":
                formats = frozenset(spec.output_formats.values())
                _optional_str(obj, "outputFormat", formats)
                _optional_bool(obj, "googleSearch")
        return Accepted(
            model=model,
            prompt=prompt,
            aspect_ratio=ratio,
            callback_url=callback,
            endpoint=endpoint,
        )

    def status_task_id(self, match: Mapping[str, str], query: Mapping[str, str]) -> str:
        """``?taskId=``."""
        return query.get("taskId", "")

    def created(self, view: TaskView) -> tuple[int, dict[str, object]]:
        """``data.taskId`` under ``message`` (create uses ``message``, the rest ``msg``)."""
        return 200, {"code": 200, "message": "success", "data": {"taskId": view.task_id}}

    def _record(self, view: TaskView) -> dict[str, object]:
        done = view.state in ("success", "failed", "policy")
        error_code: int | None = None
        error_message = ""
        if view.state == "policy":
            error_code, error_message = 400, "Your prompt was flagged as sensitive content"
        elif view.state == "failed":
            error_code, error_message = 501, "Generation failed"
        return {
            "taskId": view.task_id,
            "paramJson": json.dumps(dict(view.params)),
            "completeTime": _stamp(view.finished_wall) if done else "",
            "createTime": _stamp(view.created_wall),
            "response": (
                {"originImageUrl": view.image_url, "resultImageUrl": self._images(view)}
                if view.state == "success"
                else None
            ),
            "successFlag": self._flags[view.state],
            "errorCode": error_code,
            "errorMessage": error_message,
        }

    @staticmethod
    def _images(view: TaskView) -> str | list[str]:
        # How generate returns numImages > 1 is not documented [?]: a list of URLs here.
        count = view.params.get("numImages", 1)
        if not isinstance(count, int) or count <= 1:
            return view.image_url
        return [f"{view.image_url}?n={n}" for n in range(1, count + 1)]

    def status(self, view: TaskView) -> tuple[int, dict[str, object]]:
        """The record-info ``data``."""
        return 200, {"code": 200, "msg": "success", "data": self._record(view)}

    def callback(self, view: TaskView) -> dict[str, object]:
        """NB1: top ``code`` is the outcome; generate-2/pro: record fields, ``code`` 200."""
        if view.endpoint == "generate":
            code = {"success": 200, "policy": 400}.get(view.state, 501)
            return {
                "code": code,
                "msg": "success" if code == 200 else "failed",
                "data": {
                    "taskId": view.task_id,
                    "info": {"resultImageUrl": view.image_url if code == 200 else None},
                },
            }
        record = self._record(view)
        record["operationType"] = f"{view.model}_1k"
        return {"code": 200, "msg": "success", "data": record}

    def error(self, code: int, message: str) -> tuple[int, dict[str, object]]:
        """``{code, msg, data}`` with the HTTP status mirroring ``code`` [?]."""
        return code, {"code": code, "msg": message, "data": None}


def _stamp(wall: float | None) -> str:
    if wall is None or not math.isfinite(wall):
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(wall))
