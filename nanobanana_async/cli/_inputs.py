"""Reading a batch's prompts from .txt, .json, .jsonl or .csv into requests (file I/O only).

Every format is read the same way: each row is numbered by the line it starts on, structured
by one path (``_structure``, cattrs), and every problem of every row is one message
``line N: problem @ $.field``, listed before anything is sent. A file that does not parse (an
unterminated CSV quote, broken JSON) is refused whole: a row it would silently merge or drop
could otherwise be paid with a garbage prompt.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Final, TextIO

from .._errors import InvalidRequestError
from .._models import ImageRequest
from .._structure import structure_request

Check = Callable[[ImageRequest], None]

#: The file types read, by suffix; ``-`` (stdin) is ``.txt`` unless told otherwise.
SUFFIXES: Final = (".txt", ".json", ".jsonl", ".csv")


# What an environment variable's name reads as: a value that does not is never echoed back,
# as it is most likely the key itself given where its variable's name was asked for.
_VARIABLE: Final = re.compile(r"[A-Z_][A-Z0-9_]*")


def unset_variable(where: str, name: str, *, flag: bool = False) -> str:
    """The problem line for ``where`` (``--api-key-env``, ``accounts[0].api_key_env``) naming
    ``name``, an environment variable that is not set; ``name`` is shown only when it reads as
    a variable's name (upper case, digits, underscores), never when it may be a key. ``flag``:
    the name follows ``where`` too, as it did on the command line."""
    if _VARIABLE.fullmatch(name):
        said = f"{where} {name}" if flag else where
        return f"{said}: no environment variable {name} is set"
    return (
        f"{where}: no environment variable of that name is set (not shown: it may be a key); "
        "give the name of the variable that holds the key, not the key"
    )


class InputError(Exception):
    """Some rows of the input file are invalid; ``lines`` says which and why, one per problem."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


Row = Mapping[str, object] | str


class _Problems:
    """One message per distinct problem, naming every line it applies to: a bad default
    (``--aspect-ratio 7:5``) is one line of output, not one per prompt."""

    def __init__(self) -> None:
        self.lines: dict[str, list[int]] = {}

    def add(self, line: int, problem: str) -> None:
        numbers = self.lines.setdefault(problem, [])
        if not numbers or numbers[-1] != line:  # items of a .json array may share a line
            numbers.append(line)


def read_requests(
    path: Path,
    defaults: Mapping[str, object],
    check: Check,
    *,
    kind: str | None = None,
    stream: TextIO | None = None,
) -> list[tuple[int, ImageRequest]]:
    """Every row of ``path`` as ``(line number, request)``, ``defaults`` filling unset fields.

    Args:
        path: the file (named in messages only when ``stream`` is given).
        defaults: request fields for every row (the command line's options); a row's own
            non-empty value wins.
        check: the provider's check of a request (``Client.validate``).
        kind: the file type (``.txt``, ``.json``, ``.jsonl``, ``.csv``); default the suffix.
        stream: read this instead of opening ``path`` (stdin).

    Raises:
        InputError: one line per distinct problem (``line N: …``, ``lines 3, 5: …``, or
            ``every prompt (N): …``); nothing is returned unless every row is valid.
        OSError, UnicodeDecodeError: the file cannot be read.
    """
    if stream is None and path.is_dir():
        # Said as it is: a folder without a suffix read "unknown file type (none)", one named
        # like a file (prompts.txt/) "Is a directory".
        raise InputError([f"a folder, not a prompt file ({', '.join(SUFFIXES)})"])
    suffix = (kind or path.suffix).lower()
    if suffix not in SUFFIXES:
        raise InputError(
            [
                f"unknown file type {suffix or '(none)'}: use {', '.join(SUFFIXES)}, or say "
                "which with --input-format (--input-format txt for a prompt a line)"
            ]
        )
    if stream is not None:
        text = stream.read()
    else:
        # utf-8-sig: a spreadsheet's CSV export starts with a byte-order mark.
        with path.open(encoding="utf-8-sig", newline="") as handle:
            text = handle.read()
    text = text.removeprefix("\ufeff")
    problems = _Problems()
    if suffix == ".csv":
        rows = list(_csv_rows(text, problems))
    else:
        # Line numbers as an editor counts them, whatever the line endings.
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        if suffix == ".json":
            rows = list(_json_rows(text, problems))
        else:
            rows = list(_line_rows(text, problems, jsonl=suffix == ".jsonl"))
    requests: list[tuple[int, ImageRequest]] = []
    for index, row in rows:
        try:
            request = structure_request({**defaults, **_set(row)}, cells=suffix == ".csv")
            check(request)
        except InvalidRequestError as exc:
            for error in in_cli_terms(exc, batch=True):
                problems.add(index, error)
            continue
        requests.append((index, request))
    if problems.lines:
        found = sorted(problems.lines.items(), key=lambda item: item[1][0])
        raise InputError([f"{_lines(numbers, len(rows))}: {error}" for error, numbers in found])
    if not requests:
        raise InputError(["no prompts found (blank lines and, in .txt, # lines are skipped)"])
    return requests


# How the command line gives a field the library asks for in its own terms (a model's
# required callback URL: the library names its per-call field and its callbacks= receiver,
# which the command line does not have): (what it is, generate's way, batch's ways).
_ASKED: Final = {
    "callback_url": (
        "a callback URL",
        "--callback-url URL",
        "--callback-url URL, or a callback_url column",
    ),
}


def in_cli_terms(error: InvalidRequestError, *, batch: bool) -> list[str]:
    """``error``'s lines, with each required field it says is missing
    (``InvalidRequestError.missing``) asked for by the command line's flag (and batch's
    column) instead of the library's words."""
    lines: list[str] = []
    for line in error.errors:
        field = line.rpartition(" @ $.")[2]  # each line ends in its path (documented)
        subject = error.missing.get(field)
        asked = _ASKED.get(field)
        if subject is not None and asked is not None:
            what, one, many = asked
            line = f"{subject} requires {what} ({many if batch else one}) @ $.{field}"
        if line not in lines:
            lines.append(line)
    return lines


def _set(row: Row) -> dict[str, object]:
    # The same rule for every format: an empty or null value is unset (the command line's
    # default, else the provider's), except the prompt, which is refused as empty.
    if isinstance(row, str):
        return {"prompt": row}
    return {
        name: value
        for name, value in row.items()
        if name == "prompt" or not (value is None or (isinstance(value, str) and not value.strip()))
    }


def _lines(numbers: list[int], rows: int) -> str:
    if len(numbers) == rows > 1:
        return f"every prompt ({rows})"  # a bad option, such as --aspect-ratio 7:5
    return lines_text(numbers)


def lines_text(numbers: list[int]) -> str:
    """``line 4``, or ``lines 1, 2, 3, 4, 5 and 195 more``."""
    if len(numbers) == 1:
        return f"line {numbers[0]}"
    shown = ", ".join(map(str, numbers[:5]))
    more = f" and {len(numbers) - 5} more" if len(numbers) > 5 else ""
    return f"lines {shown}{more}"


def _line_rows(text: str, problems: _Problems, *, jsonl: bool) -> Iterator[tuple[int, Row]]:
    for index, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or (not jsonl and line.startswith("#")):
            continue
        if not jsonl:
            yield index, line
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.add(index, f"not JSON ({exc.msg})")
            continue
        except RecursionError:
            problems.add(index, "nested too deeply")
            continue
        if isinstance(value, str | dict):
            yield index, value
        else:
            problems.add(index, "not a prompt or an object")


_CSV_ERRORS: Final = {
    "unexpected end of data": "a quote opened here is never closed",
    "',' expected after '\"'": 'text after a closing quote (a quote inside a cell is written "")',
}


def _csv_rows(text: str, problems: _Problems) -> Iterator[tuple[int, Row]]:
    # csv.reader, not DictReader: line_num before each row is the line the row starts on,
    # also after blank lines and multi-line quoted prompts. strict: a stray quote is an
    # error, not a cell that swallows the rows after it.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # The rows after it cannot be told apart: nothing of the file is sent.
            problems.add(start, _CSV_ERRORS.get(str(exc), f"not CSV ({exc})"))
            return
        if not any(cell.strip() for cell in cells):
            continue
        if header is None:
            header = [cell.strip() for cell in cells]
            if not _header_ok(header, start, problems):
                return
            continue
        if len(cells) > len(header) and any(cell.strip() for cell in cells[len(header) :]):
            # An unquoted comma in a prompt: the row's cells would shift into other columns.
            problems.add(
                start,
                f"{len(cells)} cells but the header names {len(header)} columns "
                '(a cell with a comma is quoted: "a cat, sleeping")',
            )
            continue
        yield start, dict(zip(header, cells, strict=False))


def _header_ok(header: list[str], line: int, problems: _Problems) -> bool:
    named = [name for name in header if name]
    twice = sorted({name for name in named if named.count(name) > 1})
    if twice:
        problems.add(line, f"column named twice in the header: {', '.join(twice)}")
    if "prompt" not in header:
        problems.add(
            line, f"the header names no prompt column (it names: {', '.join(named) or 'none'})"
        )
    return not twice and "prompt" in header


_SPACE: Final = re.compile(r"[ \t\n\r]*")


def _json_rows(text: str, problems: _Problems) -> Iterator[tuple[int, Row]]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.add(exc.lineno, f"not JSON ({exc.msg})")
        return
    except RecursionError:
        problems.add(1, "nested too deeply")
        return
    first = _SPACE.match(text).end()  # type: ignore[union-attr]  # matches the empty string
    if not isinstance(value, list):
        line = text.count("\n", 0, first) + 1
        problems.add(line, "a .json file holds an array of prompts or objects")
        return
    # Each item is numbered by the line it starts on, as in every other format: decoded a
    # second time, one item at a time, to learn where each starts.
    decoder = json.JSONDecoder()
    pos, line, counted = first + 1, 1, 0
    for item in value:
        pos = _SPACE.match(text, pos).end()  # type: ignore[union-attr]
        line += text.count("\n", counted, pos)
        counted = pos
        if isinstance(item, str | dict):
            yield line, item
        else:
            problems.add(line, "not a prompt or an object")
        _, end = decoder.raw_decode(text, pos)
        pos = _SPACE.match(text, end).end() + 1  # type: ignore[union-attr]  # past , or ]
