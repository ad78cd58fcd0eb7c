"""Reading providers' answers: strict parsing of wire shapes, the envelope, and the typed error
for a refusal (pure, no I/O)."""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import attrs

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
from .._models import TaskRef

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
    request_id, body = (None, None) if response is None else context(response)
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
            request_id=request_id,
            body=body,
        )
    elif effective == 455 or effective >= 500:
        cls = ProviderUnavailableError
    return cls(
        message,
        provider=provider,
        status=status,
        code=code,
        task_id=task_id,
        request_id=request_id,
        body=body,
        request_line=(response.request_line or None) if response is not None else None,
    )


def context(response: HttpResponse) -> tuple[str | None, bytes]:
    """What an error keeps of the answer it was read from: the provider's request id and the
    body (already masked by the transport; the error cuts it to 512 bytes)."""
    return response.request_id(), response.body


def _strict_str(value: object, _: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _strict_int(value: object, _: object) -> int:
    # Some providers send numeric codes as digit strings; accept those, refuse the rest.
    if isinstance(value, bool):
        raise TypeError("expected an integer, got a bool")
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        try:
            value = int(value)
        except ValueError:  # "--5", "²", or more digits than int() reads (F32)
            raise TypeError("a string of digits that is not an integer") from None
    if isinstance(value, int):
        _fits_a_float(value)
        return value
    raise TypeError(f"expected an integer, got {type(value).__name__}")


def _fits_a_float(value: int) -> None:
    # No field of any provider holds an integer beyond a float's range, and arithmetic on one
    # (apixo's costTime / 1000) would raise OverflowError far from the answer (F32).
    try:
        float(value)
    except OverflowError:
        raise TypeError("an integer beyond any plausible value") from None


def _strict_bool(value: object, _: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected a bool, got {type(value).__name__}")
    return value


def _strict_float(value: object, _: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    if isinstance(value, int):
        _fits_a_float(value)
    return float(value)


Reader = Callable[[object], object]


def _any(value: object) -> object:
    return value


def _read_str(value: object) -> object:
    # The common case first, in one call: most fields of most answers are strings.
    if type(value) is str:
        return value
    return _strict_str(value, None)


def _read_int(value: object) -> object:
    # An exact int well inside a float's range passes at once; the rest (bools, digit
    # strings, huge numbers) takes the full check, so errors are unchanged.
    if type(value) is int and -_FAST_INT <= value <= _FAST_INT:
        return value
    return _strict_int(value, None)


_FAST_INT: Final = 2**1000  # float() of any int up to here cannot overflow


def _read_bool(value: object) -> object:
    return _strict_bool(value, None)


def _read_float(value: object) -> object:
    return _strict_float(value, None)


def _list_of(read: Reader) -> Reader:
    def strict_list(value: object) -> list[object]:
        # A string is not a list of its characters.
        if not isinstance(value, list):
            raise TypeError(f"expected an array, got {type(value).__name__}")
        return [read(item) for item in value]

    return strict_list


_SCALARS: Final[dict[object, Reader]] = {
    str: _read_str,
    int: _read_int,
    bool: _read_bool,
    float: _read_float,
    Any: _any,
    object: _any,
}


def _reader_for(hint: object) -> tuple[Reader | None, bool]:
    """How to read a field of type ``hint``: its reader (None: taken as it is) and whether
    None is allowed."""
    if hint in _SCALARS:
        read = _SCALARS[hint]
        return (None if read is _any else read), False
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1 and len(args) == 2:
            return _reader_for(inner[0])[0], True
    if typing.get_origin(hint) is list:
        return _list_of(_value_reader(args[0]) if args else _any), False
    if isinstance(hint, type) and attrs.has(hint):
        return _class_reader(hint), False
    raise NotImplementedError(f"no wire reader for {hint!r}")


def _value_reader(hint: object) -> Reader:
    # A list item's reader: one call per item, None only where the hint allows it.
    read, optional = _reader_for(hint)
    if read is None:
        return _any
    if not optional:
        return read
    inner = read

    def optional_item(value: object) -> object:
        return None if value is None else inner(value)

    return optional_item


_MISSING: Final = object()
_CLASS_READERS: dict[type, Reader] = {}


def _class_reader(cls: type) -> Reader:
    """A reader of a JSON object as the attrs class ``cls``, built once per class.

    What cattrs did here, without its generic dispatch on every field of every answer (it
    cost ~2.5 µs per object on the per-request path): a required field must be present,
    an optional one may be absent; extra keys are ignored; types are strict. Every answer
    passes here, so a field costs one lookup and at most one call: ``Any`` fields and
    allowed Nones are taken as they are.
    """
    known = _CLASS_READERS.get(cls)
    if known is not None:
        return known
    hints = typing.get_type_hints(cls)
    plan: list[tuple[str, Reader | None, bool, bool]] = []
    for field in attrs.fields(cls):
        read_field, optional = _reader_for(hints[field.name])
        plan.append((field.name, read_field, optional, field.default is attrs.NOTHING))

    def read(value: object) -> object:
        if not isinstance(value, dict):
            raise TypeError(f"expected an object, got {type(value).__name__}")
        kwargs = {}
        get = value.get
        for name, read_field, optional, required in plan:
            raw = get(name, _MISSING)
            if raw is _MISSING:
                if required:
                    raise KeyError(name)
                continue
            if read_field is None or (optional and raw is None):
                kwargs[name] = raw
            else:
                kwargs[name] = read_field(raw)
        return cls(**kwargs)

    _CLASS_READERS[cls] = read
    return read


def structure(data: object, cls: type[T], *, provider: str, response: HttpResponse) -> T:
    """Read ``data`` as the wire class ``cls`` (an attrs class of str, int, float, bool, Any,
    ``list[...]``, nested wire classes and their ``| None``).

    Raises:
        BadResponseError: the shape or a type is wrong (with a snippet of the body).
    """
    read = _CLASS_READERS.get(cls) or _class_reader(cls)
    try:
        # The ignore: the reader built for ``cls`` returns a ``cls`` (typing.cast would be
        # a call more on every answer).
        return read(data)  # type: ignore[return-value]
    except (TypeError, ValueError, ArithmeticError, KeyError, AttributeError):
        raise _bad_shape(cls.__name__, provider, response) from None


def _bad_shape(name: str, provider: str, response: HttpResponse) -> BadResponseError:
    request_id, body = context(response)
    return BadResponseError(
        f"unexpected {name.lstrip('_')} shape: {snippet(response.body)}",
        provider=provider,
        status=response.status,
        request_id=request_id,
        body=body,
    )


def same_task(answered: str, ref: TaskRef, provider: str, response: HttpResponse) -> None:
    """Check that a status answer is about the task that was asked about.

    An answer naming another task (a proxy's cache, a provider's mix-up) must never hand that
    task's image over as this one's: it is unreadable for this task, which keeps being
    checked (issue 20, item 12b).

    Raises:
        BadResponseError: ``answered`` is not ``ref.task_id``.
    """
    if answered != ref.task_id:
        raise BadResponseError(
            f"the answer is about task {snippet(answered)[:80]!r}, not this one",
            provider=provider,
            status=response.status,
            task_id=ref.task_id,
        )


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


def open_envelope(response: HttpResponse, provider: str, *, task_id: str | None = None) -> object:
    """Check an enveloped answer, ``{code, message|msg, data}`` as crun, nanobananaapi and apixo
    wrap every answer, and return its ``data``.

    Raises:
        APIError: the typed error for a non-2xx HTTP status or a body code other than 200.
        BadResponseError: the body is not an envelope.
    """
    if response.status >= 400:
        raise error_for_response(response, provider, task_id=task_id)
    body = response.json_object(provider)
    code: object = body.get("code")
    if type(code) is int and code == 200:
        # The answer of almost every request, checked in line (this runs on every answer).
        message, msg = body.get("message"), body.get("msg")
        if (message is None or type(message) is str) and (msg is None or type(msg) is str):
            return body.get("data")
    try:
        code = _strict_int(body["code"], None)
        for key in ("message", "msg"):
            text = body.get(key)
            if text is not None and not isinstance(text, str):
                raise TypeError(key)
    except (TypeError, ValueError, ArithmeticError, KeyError):
        raise _bad_shape("Envelope", provider, response) from None
    if code != 200:
        raise error_for(
            provider,
            status=response.status,
            code=code,
            message=message_of(body) or snippet(response.body),
            task_id=task_id,
            response=response,
        )
    return body.get("data")


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
    try:
        return _strict_float(value, None)
    except TypeError:
        request_id, body = context(response)
        raise BadResponseError(
            f"expected a number as the balance: {snippet(response.body)}",
            provider=provider,
            status=response.status,
            request_id=request_id,
            body=body,
        ) from None


def require_mapping(value: object, provider: str, response: HttpResponse) -> Mapping[str, object]:
    """``value`` as a JSON object, or BadResponseError."""
    if not isinstance(value, Mapping):
        request_id, body = context(response)
        raise BadResponseError(
            f"expected an object in the answer: {snippet(response.body)}",
            provider=provider,
            status=response.status,
            request_id=request_id,
            body=body,
        )
    return value
