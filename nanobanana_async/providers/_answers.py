"""Reading providers' answers: strict parsing of wire shapes, the envelope, and the typed error
for a refusal (pure, no I/O)."""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any, Final, TypeVar

import attrs
import cattrs

from .._backoff import parse_retry_after
from .._errors import (
    APIError,
    AuthenticationError,
    BadResponseError,
    InsufficientCreditsError,
    ProviderUnavailableError,
    RateLimitError,
    RequestRejectedError,
    snippet,
)
from .._http import HttpResponse

T = TypeVar("T")

_CONTENT_POLICY_MARKERS: Final = (
    "policy",
    "sensitive",
    "nsfw",
    "prohibited",
    "violation",
    "flagged",
)


def looks_like_content_policy(code: object, message: object) -> bool:
    """Whether a failure code or message names a content-policy refusal."""
    text = f"{code or ''} {message or ''}".lower()
    return any(marker in text for marker in _CONTENT_POLICY_MARKERS)


def error_for(
    provider: str,
    *,
    status: int,
    code: int | None,
    message: str,
    task_id: str | None = None,
    response: HttpResponse | None = None,
) -> APIError:
    """Map an HTTP status and the provider's body code to the typed error.

    The body code wins over the HTTP status, because crun signals errors (even 429) in the body
    with HTTP 200.
    """
    effective = code if code is not None and code != 200 else status
    cls: type[APIError] = APIError
    if effective in (401, 403):
        cls = AuthenticationError
    elif effective == 402:
        cls = InsufficientCreditsError
    elif effective in (400, 422):
        cls = RequestRejectedError
    elif effective == 429:
        retry_after = None
        if response is not None:
            retry_after = parse_retry_after(response.headers, response.received_at)
        return RateLimitError(
            message,
            provider=provider,
            status=status,
            code=code,
            retry_after=retry_after,
            task_id=task_id,
        )
    elif effective == 455 or effective >= 500:
        cls = ProviderUnavailableError
    return cls(message, provider=provider, status=status, code=code, task_id=task_id)


def _strict_str(value: object, _: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _strict_int(value: object, _: object) -> int:
    # Some providers send numeric codes as digit strings; accept those, refuse the rest.
    if isinstance(value, bool):
        raise TypeError("expected an integer, got a bool")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise TypeError(f"expected an integer, got {type(value).__name__}")


def _strict_bool(value: object, _: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected a bool, got {type(value).__name__}")
    return value


def _strict_float(value: object, _: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _is_list_type(cls: object) -> bool:
    return typing.get_origin(cls) is list


def _make_converter() -> cattrs.Converter:
    # Extra keys are tolerated (providers add fields); wrong types are not.
    converter = cattrs.Converter(forbid_extra_keys=False)

    def strict_list(value: object, cls: Any) -> list[object]:
        # cattrs would turn a string into a list of its characters.
        if not isinstance(value, list):
            raise TypeError(f"expected an array, got {type(value).__name__}")
        (item_type,) = typing.get_args(cls) or (Any,)
        return [converter.structure(item, item_type) for item in value]

    converter.register_structure_hook_func(_is_list_type, strict_list)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(bool, _strict_bool)
    converter.register_structure_hook(float, _strict_float)
    return converter


WIRE: Final = _make_converter()


def structure(data: object, cls: type[T], *, provider: str, response: HttpResponse) -> T:
    """Read ``data`` as the wire class ``cls``.

    Raises:
        BadResponseError: the shape or a type is wrong (with a snippet of the body).
    """
    try:
        return WIRE.structure(data, cls)
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError, AttributeError):
        raise BadResponseError(
            f"unexpected {cls.__name__.lstrip('_')} shape: {snippet(response.body)}",
            provider=provider,
            status=response.status,
        ) from None


def drop_none(body: Mapping[str, object]) -> dict[str, object]:
    """The JSON object without its None values (optional fields are left out, not null)."""
    return {k: v for k, v in body.items() if v is not None}


def message_of(obj: Mapping[str, object]) -> str:
    """The provider's words: the first text under the keys providers use for an error message,
    plus the detail apixo puts in ``data.error`` ("Missing required field: input.prompt")
    when the top-level message is only a category ("Invalid request")."""
    text = _first_message(obj)
    data = obj.get("data")
    detail = data.get("error") if isinstance(data, Mapping) else None
    if isinstance(detail, str) and detail and detail != text:
        return f"{text}: {detail}" if text else detail
    return text


def _first_message(obj: Mapping[str, object]) -> str:
    for key in ("message", "msg", "error", "errorMessage", "failMsg"):
        value = obj.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, Mapping):
            inner = _first_message(value)
            if inner:
                return inner
    return ""


@attrs.frozen
class Envelope:
    """``{code, message|msg, data}``, as crun, nanobananaapi and apixo wrap every answer."""

    code: int
    data: Any = None
    message: str | None = None
    msg: str | None = None


def open_envelope(response: HttpResponse, provider: str, *, task_id: str | None = None) -> object:
    """Check an enveloped answer and return its ``data``.

    Raises:
        APIError: the typed error for a non-2xx HTTP status or a body code other than 200.
        BadResponseError: the body is not an envelope.
    """
    if response.status >= 400:
        raise error_for_response(response, provider, task_id=task_id)
    body = response.json_object(provider)
    code = body.get("code")
    if type(code) is int and code == 200:
        # The answer of almost every request: read without the converter (a third of the
        # parse's cost); anything else takes the strict path below.
        return body.get("data")
    envelope = structure(body, Envelope, provider=provider, response=response)
    if envelope.code != 200:
        raise error_for(
            provider,
            status=response.status,
            code=envelope.code,
            message=message_of(body) or snippet(response.body),
            task_id=task_id,
            response=response,
        )
    return envelope.data


def error_for_response(
    response: HttpResponse, provider: str, *, task_id: str | None = None
) -> APIError:
    """The typed error for a response with an error HTTP status, reading any body it has."""
    code: int | None = None
    message = snippet(response.body)
    try:
        body = response.json_object(provider)
    except BadResponseError:
        body = None
    if body is not None:
        raw_code = body.get("code")
        if isinstance(raw_code, int) and not isinstance(raw_code, bool):
            code = raw_code
        message = message_of(body) or message
    return error_for(
        provider,
        status=response.status,
        code=code,
        message=message,
        task_id=task_id,
        response=response,
    )


def no_balance(provider: str) -> float:
    """``parse_balance`` of a provider without a balance endpoint (never called)."""
    raise AssertionError(f"{provider} has no balance endpoint; build_balance() returned None")


def balance_number(value: object, provider: str, response: HttpResponse) -> float:
    """``value`` as a balance, or BadResponseError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadResponseError(
            f"expected a number as the balance: {snippet(response.body)}",
            provider=provider,
            status=response.status,
        )
    return float(value)


def require_mapping(value: object, provider: str, response: HttpResponse) -> Mapping[str, object]:
    """``value`` as a JSON object, or BadResponseError."""
    if not isinstance(value, Mapping):
        raise BadResponseError(
            f"expected an object in the answer: {snippet(response.body)}",
            provider=provider,
            status=response.status,
        )
    return value
