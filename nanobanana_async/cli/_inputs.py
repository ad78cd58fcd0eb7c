"""Reading a batch's prompts from .txt, .jsonl or .csv into requests (file I/O only)."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Mapping
from pathlib import Path

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
    rows: list[tuple[int, Mapping[str, object] | str]] = []
    problems: list[str] = []
    with path.open(encoding="utf-8", newline="") as handle:
        if suffix == ".csv":
            for index, record in enumerate(csv.DictReader(handle), start=2):
                rows.append((index, dict(record)))
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
                    if not isinstance(value, dict):
                        problems.append(f"line {index}: not a JSON object")
                        continue
                    rows.append((index, value))
                else:
                    rows.append((index, line))
    requests: list[tuple[int, ImageRequest]] = []
    for index, row in rows:
        fields = {"prompt": row} if isinstance(row, str) else _coerce(row)
        try:
            request = ImageRequest.from_mapping({**defaults, **fields})
            check(request)
        except InvalidRequestError as exc:
            problems.extend(f"line {index}: {error}" for error in exc.errors)
            continue
        requests.append((index, request))
    if problems:
        raise InputError(problems)
    if not requests:
        raise InputError([f"{path}: no prompts found"])
    return requests
