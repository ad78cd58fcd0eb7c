"""The four providers' wire protocols as a server speaks them: routes, strict request
validation, answers, error shapes and callbacks (pure, no I/O).

Written from ``shared/providers/PROTOCOLS.md`` independently of the client's drivers, so a
misreading in one does not hide in the other. Where the documents are silent ([?]), the choice
made here is the stricter plausible one, noted in a comment.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import Final, Literal

import attrs

State = Literal["queued", "running", "success", "failed", "policy", "unknown"]
Kind = Literal["create", "status", "balance"]

_CLASSIC_RATIOS: Final = frozenset(
    {"1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "5:4", "4:5", "21:9"}
)
_EXTREME_RATIOS: Final = frozenset({"1:4", "4:1", "1:8", "8:1"})


class RejectError(Exception):
    """A request the real service would refuse: ``code`` is the HTTP-like code to answer."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@attrs.define(kw_only=True)
class Accepted:
    """A validated create: what the simulator needs to run the task."""

    model: str
    prompt: str
    aspect_ratio: str | None
    callback_url: str | None
    endpoint: str = ""


@attrs.define(kw_only=True)
class TaskView:
    """What an answer about a task may show."""

    task_id: str
    model: str
    endpoint: str
    state: State
    created_wall: float
    finished_wall: float | None
    image_url: str
    params: Mapping[str, object]


def _obj(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise RejectError(400, f"{where} must be an object")
    return value


def _required_str(body: Mapping[str, object], key: str, where: str = "") -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RejectError(400, f"Missing required field: {where}{key}")
    return value


def _optional_str(body: Mapping[str, object], key: str, allowed: frozenset[str]) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or value not in allowed:
        raise RejectError(400, f"Invalid value for {key}: {value!r}")
    return value


def _url_list(body: Mapping[str, object], key: str, cap: int | None) -> list[str]:
    value = body.get(key, [])
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RejectError(400, f"{key} must be an array of strings")
    if cap is not None and len(value) > cap:
        raise RejectError(400, f"{key} takes at most {cap} images")
    for url in value:
        if not url.startswith(("http://", "https://")):
            raise RejectError(400, f"{key} holds an invalid URL")
    return value


def _prompt(body: Mapping[str, object], cap: int | None, where: str = "") -> str:
    prompt = _required_str(body, "prompt", where)
    if cap is not None and len(prompt) > cap:
        raise RejectError(400, f"{where}prompt exceeds {cap} characters")
    return prompt


def _callback(body: Mapping[str, object], key: str, *, required: bool) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise RejectError(400, f"Missing required field: {key}")
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise RejectError(400, f"{key} must be an http(s) URL")
    return value


def _only(
    body: Mapping[str, object], fields: frozenset[str], where: str = "", code: int = 400
) -> None:
    # Every field a document does not define is refused, so a misnamed field (camelCase for
    # snake_case, a field of another provider or model) fails here as it would there.
    unknown = sorted(set(body) - fields)
    if unknown:
        raise RejectError(code, f"Unknown field: {where}{unknown[0]}")


def _optional_bool(body: Mapping[str, object], key: str) -> None:
    if key in body and body[key] is not None and not isinstance(body[key], bool):
        raise RejectError(400, f"{key} must be a boolean")


class WireProtocol:
    """Base of one provider's server side."""

    name: str = ""
    prefix: str = ""
    create_routes: tuple[str, ...] = ()
    status_route: str = ""
    balance_route: str | None = None
    #: Whether a create refused on content is answered as a failed task (xingchao's docs).
    refuses_at_create: bool = False

    def authorized(self, headers: Mapping[str, str], key: str) -> bool:
        """Whether the request carries the right key."""
        return headers.get("Authorization", "") == f"Bearer {key}"

    def validate(self, route: str, match: Mapping[str, str], body: object) -> Accepted:
        """Check a create body as the real service would; raises RejectError."""
        raise NotImplementedError

    def status_task_id(self, match: Mapping[str, str], query: Mapping[str, str]) -> str:
        """The task id a status request asks about."""
        raise NotImplementedError

    def created(self, view: TaskView) -> tuple[int, dict[str, object]]:
        """HTTP status and body answering an accepted create."""
        raise NotImplementedError

    def status(self, view: TaskView) -> tuple[int, dict[str, object]]:
        """HTTP status and body answering a status request."""
        raise NotImplementedError

    def callback(self, view: TaskView) -> dict[str, object]:
        """The callback body for a finished task."""
        raise NotImplementedError

    def balance(self, credits: float) -> tuple[int, dict[str, object]]:
        """HTTP status and body answering a balance request."""
        return 404, self.error(404, "Not found")[1]

    def error(self, code: int, message: str) -> tuple[int, dict[str, object]]:
        """HTTP status and body for an error ``code``."""
        return code, {"code": code, "message": message, "data": None}

    def body_429(self) -> tuple[int, dict[str, object]]:
        """A rate-limit refusal carried in the body with HTTP 200 (crun's style)."""
        return 200, {"code": 429, "message": "Rate limited", "data": None}


class Xingchao(WireProtocol):
    """xingchaoyiqing: no envelope; ``status`` queued/processing/completed/failed."""

    name = "xingchao"
    prefix = "/kyyReactApiServer"
    refuses_at_create = True
    create_routes = ("/v1/banana/images",)
    status_route = "/v1/result/{task_id}"
    _models: Final = frozenset(
        {
            "nano-banana",
            "nano-banana-2",
            "nano-banana-pro",
            "nano-banana-2-stable",
            "nano-banana-pro-stable",
        }
    )
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
        """model, prompt, lower-case resolution (2k/4k only on pro), size, ≤ 6 image_urls.

        The docs' own example sends nano-banana-2 at 2k against their resolution table, so
        nano-banana-2 takes 2k/4k here too.
        """
        obj = _obj(body, "body")
        _only(obj, self._fields)
        model = _required_str(obj, "model")
        if model not in self._models:
            raise RejectError(400, f"Unknown model: {model}")
        prompt = _prompt(obj, None)
        resolution = _optional_str(obj, "resolution", frozenset({"1k", "2k", "4k"}))
        if resolution in ("2k", "4k") and model in ("nano-banana", "nano-banana-2-stable"):
            raise RejectError(400, f"{resolution} is only supported by nano-banana-pro models")
        size = _optional_str(obj, "size", _CLASSIC_RATIOS)
        _url_list(obj, "image_urls", 6)
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


class Crun(WireProtocol):
    """crun.ai: envelope; errors in the body ``code`` with HTTP 200."""

    name = "crun"
    prefix = ""
    create_routes = ("/api/v1/client/job/CreateTask",)
    status_route = "/api/v1/client/job/TaskInfo"
    balance_route = "/api/v1/client/account/balance"
    _nb2: Final = frozenset(
        {
            "google/nano-banana-2",
            "google/nano-banana-2-v2",
            "google/nano-banana-2-lite",
            "google/nano-banana-pro",
            "google/nano-banana-pro-v2",
        }
    )
    _classic: Final = frozenset({"google/nano-banana", "google/nano-banana-v2"})
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
        if model not in self._nb2 | self._classic:
            raise RejectError(422, f"Unsupported model: {model}")
        model_input = _obj(obj.get("input"), "input")
        _only(model_input, self._input_fields, "input.", code=422)
        nb2 = model in self._nb2
        prompt = _prompt(model_input, 20_000 if nb2 else 5_000, "input.")
        ratios = _CLASSIC_RATIOS | {"auto"} | (_EXTREME_RATIOS if nb2 else frozenset())
        ratio = _optional_str(model_input, "aspect_ratio", ratios)
        if not model.endswith("-v2"):
            formats = frozenset({"png", "jpg"} if nb2 else {"png", "jpeg"})
            _optional_str(model_input, "output_format", formats)
        cap = 10 if model.endswith("-lite") else 14 if nb2 else 5
        _url_list(model_input, "img_urls", cap)
        if model == "google/nano-banana-v2":
            _optional_str(model_input, "resolution", frozenset({"1K"}))
        elif nb2:
            _optional_str(model_input, "resolution", frozenset({"1K", "2K", "4K"}))
        elif "resolution" in model_input:
            raise RejectError(422, "resolution is not supported by this model")
        if "google_search" in model_input and model != "google/nano-banana-2":
            raise RejectError(422, "google_search is only supported by google/nano-banana-2")
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

    def error(self, code: int, message: str) -> tuple[int, dict[str, object]]:
        """Whether HTTP mirrors ``code`` is [?]: HTTP 200 is the harder case, so it is used."""
        return 200, {"code": code, "message": message, "data": None}


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
        if endpoint == "generate":
            prompt = _prompt(obj, None)
            kind = obj.get("type")
            if kind not in ("TEXTTOIAMGE", "IMAGETOIAMGE"):
                raise RejectError(400, "type must be TEXTTOIAMGE or IMAGETOIAMGE")
            urls = _url_list(obj, "imageUrls", None)  # no cap is documented
            if kind == "IMAGETOIAMGE" and not urls:
                raise RejectError(400, "IMAGETOIAMGE needs imageUrls")
            num = obj.get("numImages", 1)
            if isinstance(num, bool) or not isinstance(num, int) or not 1 <= num <= 4:
                raise RejectError(400, "numImages must be 1-4")
            ratio = _optional_str(obj, "image_size", _CLASSIC_RATIOS)
            if obj.get("watermark") is not None and not isinstance(obj["watermark"], str):
                raise RejectError(400, "watermark must be text")
            callback = _callback(obj, "callBackUrl", required=True)
            model = "nano-banana"
        elif endpoint == "generate-2":
            prompt = _prompt(obj, 20_000)
            _url_list(obj, "imageUrls", 14)
            ratio = _optional_str(obj, "aspectRatio", _CLASSIC_RATIOS | _EXTREME_RATIOS | {"auto"})
            _optional_str(obj, "resolution", frozenset({"1K", "2K", "4K"}))
            _optional_str(obj, "outputFormat", frozenset({"png", "jpg"}))
            _optional_bool(obj, "googleSearch")
            callback = _callback(obj, "callBackUrl", required=False)
            model = "nano-banana-2"
        else:
            prompt = _prompt(obj, 20_000)
            _url_list(obj, "imageUrls", 8)
            _optional_str(obj, "resolution", frozenset({"1K", "2K", "4K"}))
            ratio = _optional_str(obj, "aspectRatio", _CLASSIC_RATIOS | {"auto"})
            callback = _callback(obj, "callBackUrl", required=True)
            model = "nano-banana-pro"
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


class Apixo(WireProtocol):
    """apixo.ai: model in the path; ``resultJson`` is a JSON string; HTTP mirrors ``code``."""

    name = "apixo"
    prefix = "/api/v1"
    create_routes = ("/generateTask/{model}",)
    status_route = "/statusTask/{model}"
    balance_route = "/apikeys/current-balance"
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
        if model not in ("nano-banana", "nano-banana-2"):
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
        nb2 = model == "nano-banana-2"
        # PROTOCOLS.md 4: resolution and google_search are nano-banana-2's only ("—").
        fields = {"mode", "prompt", "image_urls", "aspect_ratio", "output_format"}
        _only(
            model_input,
            frozenset(fields | {"resolution", "google_search"} if nb2 else fields),
            "input.",
        )
        mode = model_input.get("mode")
        if mode not in ("text-to-image", "image-to-image"):
            raise RejectError(400, "Missing required field: input.mode")
        prompt = _prompt(model_input, 20_000 if nb2 else 5_000, "input.")
        urls = _url_list(model_input, "image_urls", 14 if nb2 else 5)
        if mode == "image-to-image" and not urls:
            raise RejectError(400, "image-to-image needs input.image_urls")
        ratios = _CLASSIC_RATIOS | {"auto"} | (_EXTREME_RATIOS if nb2 else frozenset())
        ratio = model_input.get("aspect_ratio", None if nb2 else "1:1")
        if not isinstance(ratio, str) or ratio not in ratios:
            raise RejectError(400, "Missing or invalid field: input.aspect_ratio")
        if nb2:
            resolution = model_input.get("resolution")
            if not isinstance(resolution, str) or resolution.lower() not in ("1k", "2k", "4k"):
                raise RejectError(400, "Missing or invalid field: input.resolution")
        formats = {"png", "jpeg", "jpg"} if nb2 else {"png", "jpeg"}
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
    429: "Rate limit exceeded",
    500: "Internal server error",
    503: "Service unavailable",
}


def _stamp(wall: float | None) -> str:
    if wall is None or not math.isfinite(wall):
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(wall))


PROTOCOLS: Final[dict[str, type[WireProtocol]]] = {
    "xingchao": Xingchao,
    "crun": Crun,
    "nanobananaapi": NanoBananaApi,
    "apixo": Apixo,
}
