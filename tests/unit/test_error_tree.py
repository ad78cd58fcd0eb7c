"""The error trees in README.md ("Errors") and ``_errors.py``'s docstring name every exported
error under its real parent class, so a new error cannot ship undocumented (issue 20, item 16).
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import nanobanana_async as nb
from nanobanana_async import _errors

README = Path(__file__).resolve().parents[2] / "README.md"
README_BLOCK = re.compile(r"<!-- errors:begin -->\n```\n(.*?)```\n<!-- errors:end -->", re.S)
DOCSTRING_BLOCK = re.compile(r"```\n(NanoBananaError.*?)```\n", re.S)
#: "│  ├─ Name (OtherBase, + OtherBase)  when you meet it": the drawing is 3 characters a level.
LINE = re.compile(r"(?P<drawing>[│├└─ ]*)(?P<name>[A-Za-z]+)(?: \((?P<also>[^)]*)\))?(?:\s|$)")


def _exported_errors() -> dict[str, type[BaseException]]:
    found = {}
    for name in nb.__all__:
        value = getattr(nb, name)
        if inspect.isclass(value) and issubclass(value, nb.NanoBananaError):
            found[name] = value
    return found


def _parse(tree: str) -> dict[str, tuple[str | None, set[str]]]:
    """Each name in the tree -> (its parent in the tree, the other bases named beside it)."""
    parents: list[str] = []
    entries: dict[str, tuple[str | None, set[str]]] = {}
    for line in tree.splitlines():
        match = LINE.match(line)
        assert match is not None, f"unreadable tree line: {line!r}"
        depth = len(match["drawing"]) // 3
        name = match["name"]
        assert name not in entries, f"{name} is in the tree twice"
        del parents[depth:]
        parent = parents[-1] if parents else None
        also = {part.strip(" +") for part in (match["also"] or "").split(",") if part.strip()}
        entries[name] = (parent, also)
        parents.append(name)
    return entries


def _trees() -> dict[str, str]:
    readme = README_BLOCK.search(README.read_text(encoding="utf-8"))
    assert readme is not None, "README.md lost its <!-- errors:begin/end --> block"
    docstring = DOCSTRING_BLOCK.search(_errors.__doc__ or "")
    assert docstring is not None, "_errors.py's docstring lost its tree"
    return {"README.md": readme.group(1), "_errors.py": docstring.group(1)}


@pytest.mark.parametrize("where", ["README.md", "_errors.py"])
def test_error_tree_names_every_exported_error_under_its_parent(where: str) -> None:
    entries = _parse(_trees()[where])
    exported = _exported_errors()
    missing = sorted(set(exported) - set(entries))
    assert not missing, f"{where}'s error tree lacks {missing}"
    for name, cls in exported.items():
        parent, also = entries[name]
        bases = {base.__name__ for base in cls.__bases__} - {"Exception"}
        if cls is nb.NanoBananaError:
            assert parent is None, f"{where}: NanoBananaError must be the tree's root"
            continue
        assert parent in bases, f"{where}: {name} is drawn under {parent}; its bases are {bases}"
        # Every other base (ValueError, TimeoutError, a second error class) is named in
        # parentheses, so `except` clauses can be read off the tree.
        assert also == bases - {parent}, f"{where}: {name} names {also} beside its parent"


def test_readme_and_docstring_trees_are_the_same() -> None:
    trees = _trees()
    assert trees["README.md"] == trees["_errors.py"]
