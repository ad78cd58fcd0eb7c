"""``python -m nanobanana_async``: the ``nanobanana`` command line."""

from __future__ import annotations

from .cli import console_main

if __name__ == "__main__":
    raise SystemExit(console_main())
