"""Downloading result images to disk: streamed, size-capped, atomic (does network and file I/O).

Image hosts are not the provider's API: the session used here never carries the API key.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Final

import aiohttp
import anyio
import anyio.to_thread

from ._errors import BadResponseError
from ._models import ImageResult

MAX_IMAGE_BYTES: Final = 64 * 1024 * 1024
_ATTEMPTS: Final = 3
_CHUNK: Final = 64 * 1024


def targets(result: ImageResult, dest: Path) -> list[Path]:
    """Where each URL of ``result`` goes: ``dest`` itself for one image, else ``dest-1`` …"""
    if len(result.urls) == 1:
        return [dest]
    return [dest.with_name(f"{dest.stem}-{i + 1}{dest.suffix}") for i in range(len(result.urls))]


class Downloader:
    """Bounded, retrying downloads into files, written atomically.

    Args:
        concurrency: downloads at once.
        max_bytes: a larger image is refused.
        timeout: seconds per download attempt.
    """

    def __init__(
        self, *, concurrency: int = 8, max_bytes: int = MAX_IMAGE_BYTES, timeout: float = 120.0
    ) -> None:
        self._semaphore = asyncio.Semaphore(concurrency)
        self._max_bytes = max_bytes
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def download(self, result: ImageResult, dest: Path) -> list[Path]:
        """Write every image of ``result``; files already present are kept as they are.

        Raises:
            BadResponseError: an image could not be fetched (expired URL, not an image, too
                large) after retries; ``task_id`` names the task.
        """
        paths = targets(result, dest)
        for url, path in zip(result.urls, paths, strict=True):
            if await anyio.to_thread.run_sync(_complete, path):
                continue
            async with self._semaphore:
                await self._fetch(result, url, path)
        return paths

    async def _fetch(self, result: ImageResult, url: str, path: Path) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        last: BadResponseError | None = None
        for attempt in range(_ATTEMPTS):
            try:
                data = await self._read(result, url)
            except BadResponseError as exc:
                if not exc.retryable:
                    raise
                last = exc
                await asyncio.sleep(0.5 * 2**attempt)
                continue
            await anyio.to_thread.run_sync(_write_atomically, path, data)
            return
        assert last is not None
        raise last

    async def _read(self, result: ImageResult, url: str) -> bytes:
        assert self._session is not None

        def error(message: str, status: int, *, retryable: bool) -> BadResponseError:
            return BadResponseError(
                f"image download failed: {message}",
                provider=result.provider,
                status=status,
                retryable=retryable,
                task_id=result.task_id,
            )

        try:
            async with self._session.get(
                url, timeout=aiohttp.ClientTimeout(total=self._timeout)
            ) as resp:
                if resp.status != 200:
                    # 404/403/410: the URL expired or never existed; retrying will not help.
                    raise error(f"HTTP {resp.status}", resp.status, retryable=resp.status >= 500)
                if not resp.content_type.startswith("image/"):
                    raise error(f"not an image ({resp.content_type})", 200, retryable=False)
                if (resp.content_length or 0) > self._max_bytes:
                    raise error("image larger than the size cap", 200, retryable=False)
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    size += len(chunk)
                    if size > self._max_bytes:
                        raise error("image larger than the size cap", 200, retryable=False)
                    chunks.append(chunk)
                return b"".join(chunks)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise error(type(exc).__name__, 0, retryable=True) from None

    async def aclose(self) -> None:
        """Close the download session."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _complete(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its 0600 mode would ignore the user's umask for an image they asked for.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
    try:
        with tmp.open("xb") as handle:
            handle.write(data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
