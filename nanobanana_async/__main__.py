"""``nanobanana`` / ``python -m nanobanana_async``: generate one image to a file (does I/O).

With no ``NANOBANANA_API_KEY`` set, it uses the built-in ``local`` simulator and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from pathlib import Path
from typing import Final

import aiohttp
import anyio

from ._client import Client
from ._errors import NanoBananaError
from .providers import PROVIDERS

_MAX_IMAGE_BYTES: Final = 64 * 1024 * 1024


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nanobanana", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate", help="generate one image and save it")
    generate.add_argument("prompt")
    generate.add_argument("--provider", choices=PROVIDERS, default=None)
    generate.add_argument("--model", default="nano-banana-2")
    generate.add_argument("--resolution", default=None)
    generate.add_argument("--aspect-ratio", default=None)
    generate.add_argument("--image-url", action="append", default=[], dest="image_urls")
    generate.add_argument("--output", "-o", default="image.png", type=Path)
    return parser


async def _download(url: str, dest: Path) -> int:
    # Written to a temporary file first and renamed, so a failed download leaves no half file.
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        if resp.status != 200:
            raise NanoBananaError(f"image download failed: HTTP {resp.status}")
        data = await resp.content.read(_MAX_IMAGE_BYTES + 1)
    if len(data) > _MAX_IMAGE_BYTES:
        raise NanoBananaError("image larger than 64 MiB; refused")
    await anyio.to_thread.run_sync(_write_atomically, dest, data)
    return len(data)


def _write_atomically(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its 0600 mode would ignore the user's umask for an image they asked for.
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.part")
    try:
        with tmp.open("xb") as handle:
            handle.write(data)
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)


async def _generate(args: argparse.Namespace) -> int:
    provider = args.provider
    if provider is None:
        provider = "apixo" if os.environ.get("NANOBANANA_API_KEY") else "local"
        if provider == "local":
            sys.stderr.write("no NANOBANANA_API_KEY set: using the built-in local simulator\n")
    async with Client(provider) as client:
        result = await client.generate(
            args.prompt,
            model=args.model,
            resolution=args.resolution,
            aspect_ratio=args.aspect_ratio,
            image_urls=args.image_urls,
        )
        size = await _download(result.urls[0], args.output)
    sys.stdout.write(f"{args.output} ({size} bytes) from {provider} task {result.task_id}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 done, 1 failed, 2 usage)."""
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_generate(args))
    except NanoBananaError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2 if isinstance(exc, ValueError) else 1


if __name__ == "__main__":
    raise SystemExit(main())
