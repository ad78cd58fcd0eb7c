"""Untyped data (batch rows, journal rows) into the package's values with cattrs, and cattrs'
errors into ours: ``"problem @ $.path"`` (no I/O).

Only off the hot path: status answers are read by ``providers/_answers.py``'s per-class
readers, measured cheaper than any converter. Here one structuring path gives every source the
same typed errors: a row of a JSON file, a CSV row and a journal row name a bad field the same way.

``ImageRequest`` checks its own fields (types included) and lists every problem at once, so its
fields are handed over as read (CSV cells parsed where they parse, else kept as text for the
check to name); cattrs adds what the class cannot see: unknown and missing fields.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)
from cattrs.gen import make_dict_structure_fn

from ._errors import InvalidRequestError
from ._models import ImageRequest

T = TypeVar("T")


class RecordError(ValueError):
    """A record (a journal row) that does not fit its class; ``errors`` lists every problem
    as ``"problem @ $.path"``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def structure_record(data: Mapping[str, object], cls: type[T]) -> T:
    """An attrs record of ``cls`` (a journal row) from JSON-like values, every field's type
    checked strictly (``"3"`` is not a number); a nested ``ImageRequest`` as a JSON row.

    Raises:
        RecordError: every problem, each ``"problem @ $.field"``.
    """
    try:
        return _RECORDS.structure(data, cls)
    except (ClassValidationError, IterableValidationError) as exc:
        raise RecordError(problems(exc)) from None


def structure_request(data: Mapping[str, object], *, cells: bool = False) -> ImageRequest:
    """An ``ImageRequest`` from a JSON object (or, with ``cells``, a CSV row of text cells).

    CSV cells are text: ``num_images`` ``3``, ``timeout`` ``30.5``, ``google_search``
    ``true``/``false``/``yes``/``no``/``1``/``0``, ``image_urls`` separated by spaces or ``;``,
    ``provider_options`` as ``name=value;name=value``. A cell that does not parse is kept as
    text and refused by the request's own check, with the same message a JSON row gets.

    Raises:
        InvalidRequestError: every problem, each ``"problem @ $.field"`` (``$`` for the row).
    """
    given: object = data
    if not isinstance(given, Mapping):
        raise InvalidRequestError(["not a prompt or an object"])
    # Unknown keys found here, not by cattrs: its forbid_extra_keys reports them alone, and
    # a row's every problem is said at once (a misspelt column and a bad value).
    unknown = [key for key in data if key not in _REQUEST_FIELDS]
    if unknown:
        data = {key: value for key, value in data.items() if key in _REQUEST_FIELDS}
    found = [_unknown_field(ImageRequest, str(key), "$") for key in sorted(map(str, unknown))]
    try:
        request = (_CELLS if cells else _VALUES).structure(data, ImageRequest)
    except (ClassValidationError, IterableValidationError) as exc:
        raise InvalidRequestError(found + problems(exc)) from None
    if found:
        raise InvalidRequestError(found)
    return request


def problems(exc: BaseException, path: str = "$") -> list[str]:
    """cattrs' error tree as our messages, ``"problem @ $.path"`` (no path for the whole row).

    Like ``cattrs.transform_error``, and a request's own ``InvalidRequestError`` (raised by
    its check once every field was read) keeps its messages, under the path it was read at.
    """
    if isinstance(exc, InvalidRequestError):
        return [_under(path, error) for error in exc.errors]
    if isinstance(exc, ClassValidationError | IterableValidationError):
        found: list[str] = []
        with_notes, without = exc.group_exceptions()
        for inner, note in with_notes:
            where = (
                f"{path}.{note.name}"
                if isinstance(note, AttributeValidationNote)
                else f"{path}[{note.index!r}]"
            )
            found.extend(problems(inner, where))
        for inner in without:
            found.extend(problems(inner, path))
        return found
    if isinstance(exc, ForbiddenExtraKeysError):
        return [_unknown_field(exc.cl, name, path) for name in sorted(exc.extra_fields)]
    return [_under(path, f"{_describe(exc)} @ $")]


def _unknown_field(cls: type, name: str, path: str) -> str:
    fields = ", ".join(sorted(field.name for field in attrs.fields(cls)))
    return f"unknown field (known: {fields}) @ {path}.{name}"


def _under(path: str, error: str) -> str:
    # "problem @ $.prompt" read at "$.request" is "problem @ $.request.prompt".
    text, _, where = error.rpartition(" @ ")
    if not _:
        text, where = error, "$"
    where = path + where.removeprefix("$")
    return text if where == "$" else f"{text} @ {where}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, _WrongTypeError):
        return str(exc)
    return f"not valid ({type(exc).__name__})"


class _WrongTypeError(ValueError):
    """A record's value of the wrong type; the message says what was expected."""


def _members(kind: object) -> tuple[object, ...]:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return tuple(arg for arg in typing.get_args(kind) if arg is not type(None))
    return (kind,)


def _is_text(kind: object) -> bool:
    return all(
        member is str
        or (
            typing.get_origin(member) is typing.Literal
            and all(isinstance(a, str) for a in typing.get_args(member))
        )
        for member in _members(kind)
    )


def _as_is(value: object, _: object) -> object:
    return value


def _cell_parser(kind: object) -> Callable[[object, object], object]:
    """How a CSV cell becomes a value of ``kind``; text that does not parse stays text."""
    members = _members(kind)
    if _is_text(kind):
        return lambda value, _: value.strip() if isinstance(value, str) else value
    if members == (int,):
        return lambda value, _: _parsed(value, int)
    if members == (float,):
        return lambda value, _: _parsed(value, float)
    if members == (bool,):
        return lambda value, _: _BOOLS.get(str(value).strip().lower(), value)
    if typing.get_origin(kind) is tuple:
        return lambda value, _: value.replace(";", " ").split() if isinstance(value, str) else value
    if typing.get_origin(kind) is Mapping:
        return lambda value, _: _pairs(value) if isinstance(value, str) else value
    raise TypeError(f"no CSV reading for {kind!r}")  # a field added without one: a bug


_BOOLS: Final = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _parsed(value: object, kind: Callable[[str], object]) -> object:
    if not isinstance(value, str):
        return value
    try:
        return kind(value.strip())
    except ValueError:
        return value


def _pairs(text: str) -> object:
    # "name=value;name=value"; anything else stays text, for the request's check to name.
    pairs = [part.partition("=") for part in text.split(";") if part.strip()]
    if not pairs or not all(sep and name.strip() for name, sep, _ in pairs):
        return text
    return {name.strip(): value.strip() for name, _, value in pairs}


def _request_converter(
    hook: Callable[[object], Callable[[object, object], object]],
) -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    fields = attrs.fields(attrs.resolve_types(ImageRequest))
    overrides: dict[str, Any] = {
        field.name: cattrs.override(struct_hook=hook(field.type)) for field in fields
    }
    converter.register_structure_hook(
        ImageRequest, make_dict_structure_fn(ImageRequest, converter, **overrides)
    )
    return converter


_REQUEST_FIELDS: Final = frozenset(field.name for field in attrs.fields(ImageRequest))
_VALUES: Final = _request_converter(lambda kind: _as_is)
_CELLS: Final = _request_converter(_cell_parser)


def _strict(kind: type) -> Callable[[object, object], object]:
    def check(value: object, _: object) -> object:
        # bool is an int to Python, never to a record; an int is a fine float.
        if isinstance(value, bool) is not (kind is bool):
            raise _WrongTypeError(f"expected {_NAMES[kind]}, got {type(value).__name__}")
        if kind is float and isinstance(value, int):
            return float(value)
        if not isinstance(value, kind):
            raise _WrongTypeError(f"expected {_NAMES[kind]}, got {type(value).__name__}")
        return value

    return check


_NAMES: Final = {str: "text", int: "an integer", float: "a number", bool: "true or false"}


def _is_literal(kind: object) -> bool:
    return typing.get_origin(kind) is typing.Literal


def _literal(value: object, kind: object) -> object:
    allowed = typing.get_args(kind)
    if value not in allowed:
        raise _WrongTypeError(f"{value!r} is not one of {', '.join(map(repr, allowed))}")
    return value


def _strings(value: object, _: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise _WrongTypeError("expected a list of text")
    return tuple(value)


def _record_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    for kind in (str, int, float, bool):
        converter.register_structure_hook(kind, _strict(kind))
    converter.register_structure_hook_func(_is_literal, _literal)
    converter.register_structure_hook_func(lambda kind: kind == tuple[str, ...], _strings)
    converter.register_structure_hook(
        ImageRequest, lambda value, _: _VALUES.structure(value, ImageRequest)
    )
    return converter


_RECORDS: Final = _record_converter()
