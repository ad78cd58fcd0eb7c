"""Downloading result images to disk: streamed, size-capped, atomic (does network and file I/O).

Image hosts are not the provider's API: the session used here never carries the API key.
"""

from __future__ import annotations

import asyncio
import os
import random as _random
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO, Final

import aiohttp
import anyio
import anyio.to_thread

from ._backoff import delay
from ._clock import DEFAULT_CLOCK, Clock
from ._config import RetryPolicy
from ._errors import BadResponseError, StorageError
from ._models import ImageResult

MAX_IMAGE_BYTES: Final = 64 * 1024 * 1024
_CHUNK: Final = 64 * 1024


# Signatures of the formats providers return; a file without one is not a finished image.
_SIGNATURES: Final = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(part: str, *, limit: int = 80) -> str:
    """``part`` reduced to a file-name-safe token (task ids are untrusted: no ``/``, ``..``)."""
    cleaned = _UNSAFE.sub("_", part).strip("._") or "_"
    return cleaned[:limit]


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
        retry: attempts per image and the backoff between them (the client's policy).
        clock: what the backoff sleeps on (the client's).
        random: jitter for the backoff.
    """

    def __init__(
        self,
        *,
        concurrency: int = 8,
        max_bytes: int = MAX_IMAGE_BYTES,
        timeout: float = 120.0,
        retry: RetryPolicy | None = None,
        clock: Clock = DEFAULT_CLOCK,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self._retry = retry or RetryPolicy()
        self._clock = clock
        self._random = random
        self._semaphore = asyncio.Semaphore(concurrency)
        self._max_bytes = max_bytes
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def download(self, result: ImageResult, dest: Path) -> list[Path]:
        """Write every image of ``result``, streamed to a temporary file and renamed.

        A file already present is kept only if it is a complete image (a known signature, and
        the server's size when it states one); anything else there is replaced.

        Raises:
            StorageError: the file could not be written (disk full, permission denied, a
                folder in the way); ``task_id`` and ``path`` say which.
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
        for attempt in range(self._retry.attempts):
            try:
                await self._stream(result, url, path)
            except BadResponseError as exc:
                if not exc.retryable:
                    raise
                last = exc
                if attempt + 1 < self._retry.attempts:
                    wait = delay(attempt, self._retry, self._random)
                    await self._clock.sleep_until(self._clock.now() + wait)
                continue
            except OSError as exc:
                raise StorageError(
                    f"cannot write {path}: {exc.strerror or type(exc).__name__}",
                    task_id=result.task_id,
                    path=str(path),
                ) from None
            return
        assert last is not None
        raise last

    async def _stream(self, result: ImageResult, url: str, path: Path) -> None:
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
                # Opened and removed on the loop (metadata calls, microseconds): a cancelled
                # await of a worker thread leaves the thread running, and an open finishing
                # after Ctrl-C left its handle and a hidden .part file behind.
                tmp, handle = _open_temporary(path)
                try:
                    size = 0
                    async for chunk in resp.content.iter_chunked(_CHUNK):
                        size += len(chunk)
                        if size > self._max_bytes:
                            raise error("image larger than the size cap", 200, retryable=False)
                        await anyio.to_thread.run_sync(handle.write, chunk)
                    if resp.content_length is not None and size != resp.content_length:
                        raise error("image cut short", 200, retryable=True)
                    await anyio.to_thread.run_sync(_commit, handle, tmp, path)
                finally:
                    handle.close()
                    tmp.unlink(missing_ok=True)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise error(type(exc).__name__, 0, retryable=True) from None

    async def aclose(self) -> None:
        """Close the download session."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _complete(path: Path) -> bool:
    # Not "non-empty": a leftover text file or a cut download must be replaced, not kept.
    if not path.is_file():
        return False
    with path.open("rb") as handle:
        head = handle.read(16)
    riff_webp = head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    return riff_webp or any(head.startswith(signature) for signature in _SIGNATURES)


def _open_temporary(path: Path) -> tuple[Path, IO[bytes]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its 0600 mode would ignore the user's umask for an image they asked for.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
    return tmp, tmp.open("xb")


def _commit(handle: IO[bytes], tmp: Path, path: Path) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
    if path.is_dir():
        raise IsADirectoryError(21, "Is a directory", str(path))
    tmp.replace(path)
