"""What every simulated provider shares: the task states, the validated create and the view of
a task that answers show, the request-field checks that refuse a body as a real service would,
and ``WireProtocol``, the base of one provider's server side (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

import attrs

from ...providers import DRIVERS, ModelSpec

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


def _optional_str(
    body: Mapping[str, object], key: str, allowed: frozenset[str] | None
) -> str | None:
    # ``allowed`` None: any text (no document lists the values).
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or (allowed is not None and value not in allowed):
        raise RejectError(400, f"Invalid value for {key}: {value!r}")
    return value


def spec_of(provider: str, wire_id: str) -> ModelSpec | None:
    """The rules for one of ``provider``'s model ids, from the drivers' table.

    Caps, value sets and which fields a model takes come from that one table (each rule with
    its source there), so the simulator refuses exactly what validation refuses: where no
    document states a rule, neither enforces it. Wire names and shapes stay this package's own
    reading of the documents.
    """
    for spec in DRIVERS[provider].models.values():
        if spec.wire_id == wire_id:
            return spec
    return None


def wire_ids(provider: str) -> frozenset[str]:
    """Every model id ``provider`` sells, per the drivers' table."""
    return frozenset(spec.wire_id for spec in DRIVERS[provider].models.values())


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
    #: The HTTP error a create refused on content is answered with, where the provider
    #: documents one (apixo: 403 "forbidden/content policy"); None when it documents none.
    content_refusal: int | None = None

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

    def maintenance(self) -> tuple[int, dict[str, object]]:
        """HTTP status and body refusing a request while the service is in maintenance.

        Only crun documents a maintenance answer (455); the others list 503 "service
        unavailable" (apixo) or nothing ([?]: xingchao, nanobananaapi), so 503 it is.
        """
        return self.error(503, "Service unavailable")

    def body_429(self) -> tuple[int, dict[str, object]]:
        """A rate-limit refusal carried in the body with HTTP 200 (crun's style)."""
        return 200, {"code": 429, "message": "Rate limited", "data": None}
