"""Reading a batch's prompts from .txt, .json, .jsonl or .csv into requests (file I/O only)."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Final, TextIO

from .._errors import InvalidRequestError
from .._models import ImageRequest

Check = Callable[[ImageRequest], None]


class InputError(Exception):
    """Some rows of the input file are invalid; ``lines`` says which and why, one per row."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def _coerce(row: Mapping[str, object]) -> dict[str, object]:
    # CSV cells are text: give the typed fields their types, drop empty cells.
    out: dict[str, object] = {}
    for name, value in row.items():
        if value is None or value == "":
            continue
        if isinstance(value, str):
            value = value.strip()
            if name == "image_urls":
                out[name] = [part for part in value.replace(";", " ").split() if part]
                continue
            if name == "timeout":
                try:
                    out[name] = float(value)
                except ValueError:
                    out[name] = value
                continue
            if name == "num_images":
                out[name] = int(value) if value.isdigit() else value
                continue
            if name == "provider_options":
                # A CSV cell: "name=value" pairs separated by ";" (JSON rows give an object).
                pairs = [part.partition("=") for part in value.split(";") if part.strip()]
                out[name] = {k.strip(): v.strip() for k, sep, v in pairs if sep} or value
                continue
            if name == "google_search":
                lowered = value.lower()
                out[name] = {"true": True, "1": True, "false": False, "0": False}.get(
                    lowered, value
                )
                continue
        out[name] = value
    return out


def read_requests(
    path: Path, defaults: Mapping[str, object], check: Check
) -> list[tuple[int, ImageRequest]]:
    """Every row of ``path`` as ``(line number, request)``, ``defaults`` filling unset fields.

    Raises:
        InputError: one line per invalid row, naming its line number; nothing is returned
            unless every row is valid.
        OSError: the file cannot be read.
    """
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError([f"unknown file type {suffix or '(none)'}: use {', '.join(SUFFIXES)}"])
    rows: list[tuple[int, Mapping[str, object] | str]] = []
    problems: list[str] = []
    with path.open(encoding="utf-8", newline="") as handle:
        if suffix == ".csv":
            rows.extend(_csv_rows(handle))
        elif suffix == ".json":
            rows.extend(_json_rows(handle.read(), problems))
        else:
            for index, raw in enumerate(handle, start=1):
                line = raw.strip()
                if not line or (suffix == ".txt" and line.startswith("#")):
                    continue
                if suffix == ".jsonl":
                    try:
                        value = json.loads(line)
                    except json.JSONDecodeError as exc:
                        problems.append(f"line {index}: not JSON ({exc.msg})")
                        continue
                    except RecursionError:
                        problems.append(f"line {index}: nested too deeply")
                        continue
                    if not isinstance(value, dict):
                        problems.append(f"line {index}: not a JSON object")
                        continue
                    rows.append((index, value))
                else:
                    rows.append((index, line))
    requests: list[tuple[int, ImageRequest]] = []
    # One message per distinct problem, naming every line it applies to: a bad default
    # (--aspect-ratio 7:5) is one line of output, not one per prompt.
    by_problem: dict[str, list[int]] = {}
    for index, row in rows:
        fields = {"prompt": row} if isinstance(row, str) else _coerce(row)
        try:
            request = ImageRequest.from_mapping({**defaults, **fields})
            check(request)
        except InvalidRequestError as exc:
            for error in exc.errors:
                by_problem.setdefault(error, []).append(index)
            continue
        requests.append((index, request))
    problems.extend(
        f"{_lines(numbers, len(rows))}: {error}" for error, numbers in by_problem.items()
    )
    if problems:
        raise InputError(problems)
    if not requests:
        raise InputError(["no prompts found (blank lines and, in .txt, # lines are skipped)"])
    return requests


SUFFIXES: Final = (".txt", ".json", ".jsonl", ".csv")


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


def _csv_rows(handle: TextIO) -> Iterator[tuple[int, Mapping[str, object]]]:
    # csv.reader, not DictReader: line_num before each row is the line the row starts on,
    # also after blank lines and multi-line quoted prompts.
    reader = csv.reader(handle)
    header: list[str] | None = None
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        if not any(cell.strip() for cell in cells):
            continue
        if header is None:
            header = [cell.strip() for cell in cells]
            continue
        yield start, dict(zip(header, cells, strict=False))


def _json_rows(text: str, problems: list[str]) -> Iterator[tuple[int, Mapping[str, object] | str]]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(f"line {exc.lineno}: not JSON ({exc.msg})")
        return
    except RecursionError:
        problems.append("nested too deeply to read")
        return
    if not isinstance(value, list):
        problems.append("a .json file must hold an array of prompts or objects")
        return
    for number, item in enumerate(value, start=1):
        if isinstance(item, str | dict):
            yield number, item
        else:
            problems.append(f"item {number}: not a prompt or an object")
