"""The package's layering (STYLE.md): pure cores import no I/O library, and nothing below the
Client imports the Client or the test kit."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "nanobanana_async"
PURE = [
    "providers",
    "_backoff.py",
    "_limits.py",
    "_breaker.py",
    "_routing.py",
    "_structure.py",
    "_scheduler/_plan.py",
    "_scheduler/_latency.py",
    "_scheduler/_memory.py",
    "_scheduler/_states.py",
    "_scheduler/_decide.py",
    "_scheduler/_outcome.py",
    "webhooks/_verify.py",
    "webhooks/_registration.py",
    "testing/_wire",
    "testing/_sim_book.py",
]
BELOW_CLIENT = ["_scheduler", "providers", "_transport.py", "webhooks", "_journal.py"]


def modules(*parts: str) -> list[Path]:
    found: list[Path] = []
    for part in parts:
        path = PACKAGE / part
        found.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return found


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, as an absolute dotted name."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("path", modules(*PURE), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_pure_cores_do_no_io(path: Path) -> None:
    io = {name for name in imported(path) if name.split(".")[0] in ("aiohttp", "asyncio", "anyio")}
    assert io == set()


@pytest.mark.parametrize("path", modules(*BELOW_CLIENT), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_nothing_below_the_client_imports_it_or_the_test_kit(path: Path) -> None:
    upward = {
        name
        for name in imported(path)
        if name.startswith(("nanobanana_async._client", "nanobanana_async.testing"))
    }
    assert upward == set()
