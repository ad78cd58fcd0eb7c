"""Downloading result images to disk: streamed, size-capped, atomic, named by the bytes' type
(does network and file I/O).

Image hosts are not the provider's API: the session used here never carries the API key.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import random as _random
import re
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

import aiohttp
import anyio
import anyio.to_thread
import yarl

from ._backoff import delay
from ._clock import DEFAULT_CLOCK, Clock
from ._config import RetryPolicy
from ._errors import BadResponseError, ClientClosedError, StorageError
from ._models import ImageResult
from .events import Downloaded, Retrying, _Emitter

if TYPE_CHECKING:
    from ._journal import Journal

_log = logging.getLogger("nanobanana_async")

MAX_IMAGE_BYTES: Final = 64 * 1024 * 1024
_CHUNK: Final = 64 * 1024


# Signatures of the formats providers return, and the suffix each is named with; a file
# without one is not a finished image.
_SIGNATURES: Final = (
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"GIF87a", ".gif"),
    (b"GIF89a", ".gif"),
)
# Bytes without a signature are named by their content type (else ".bin": never a false ".png").
_CONTENT_TYPES: Final = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
}
#: Suffixes that name an image type: a ``dest`` ending in one is used exactly as given.
IMAGE_SUFFIXES: Final = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif"})
_SAME: Final = {".jpeg": ".jpg"}
#: What each suffix's type is called in messages.
IMAGE_KINDS: Final = {".png": "PNG", ".jpg": "JPEG", ".webp": "WebP", ".gif": "GIF"}

# Where a name/bytes mismatch goes instead of the log, for a caller that says it itself.
_MISMATCHES: contextvars.ContextVar[list[tuple[Path, str]] | None] = contextvars.ContextVar(
    "nanobanana_mismatches", default=None
)


@contextlib.contextmanager
def mismatches_said_by_caller() -> Iterator[list[tuple[Path, str]]]:
    """Downloads in this context (this task) do not log a file kept at a name of another type:
    each is added to the yielded list as ``(path, real suffix)`` for the caller to say (the
    command line says it once, its own way)."""
    found: list[tuple[Path, str]] = []
    token = _MISMATCHES.set(found)
    try:
        yield found
    finally:
        _MISMATCHES.reset(token)


_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(part: str, *, limit: int = 80) -> str:
    """``part`` reduced to a file-name-safe token (task ids are untrusted: no ``/``, ``..``)."""
    cleaned = _UNSAFE.sub("_", part).strip("._") or "_"
    return cleaned[:limit]


def image_suffix(head: bytes) -> str | None:
    """The suffix (``.png``, ``.jpg``, ``.webp``, ``.gif``) of the image whose first bytes are
    ``head``, or None when they are no known image's."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    return next((suffix for signature, suffix in _SIGNATURES if head.startswith(signature)), None)


def targets(result: ImageResult, dest: Path) -> list[Path]:
    """Where each URL of ``result`` goes before its type is known: ``dest`` itself for one
    image, else ``dest-1`` … (the suffix, if ``dest`` has one, kept last)."""
    if len(result.urls) == 1:
        return [dest]
    if dest.suffix.lower() in IMAGE_SUFFIXES:
        return [
            dest.with_name(f"{dest.stem}-{i + 1}{dest.suffix}") for i in range(len(result.urls))
        ]
    return [dest.with_name(f"{dest.name}-{i + 1}") for i in range(len(result.urls))]


def named(target: Path, suffix: str) -> Path:
    """``target`` as written for an image of type ``suffix``: as given when it names an image
    type itself (the caller chose it), else with ``suffix`` appended."""
    if target.suffix.lower() in IMAGE_SUFFIXES:
        return target
    return target.with_name(target.name + suffix)


class Downloader:
    """Bounded, retrying downloads into files, written atomically.

    Args:
        journal: where written files are recorded; only a file the journal says this task
            wrote is kept instead of downloaded again.
        concurrency: downloads at once.
        max_bytes: a larger image is refused.
        timeout: seconds per download attempt.
        retry: attempts per image and the backoff between them (the client's policy).
        clock: what the backoff sleeps on (the client's).
        random: jitter for the backoff.
        events: the client's events (``downloaded``, and ``retrying`` of a download).
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
        journal: Journal | None = None,
        events: _Emitter | None = None,
    ) -> None:
        self._journal = journal
        self._events = events if events is not None else _Emitter()
        self._retry = retry or RetryPolicy()
        self._clock = clock
        self._random = random
        self._semaphore = asyncio.Semaphore(concurrency)
        self._max_bytes = max_bytes
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._running: set[asyncio.Task[tuple[Path, tuple[int, int]]]] = set()

    async def download(self, result: ImageResult, dest: Path) -> list[Path]:
        """Write every image of ``result``, streamed to a temporary file and renamed over
        whatever was there.

        ``dest`` ending in an image suffix (``.png``, ``.jpg``, ``.jpeg``, ``.webp``,
        ``.gif``) is used exactly as given, whatever the bytes are (a mismatch is logged as a
        WARNING); any other ``dest`` gets the suffix of the bytes' real type, and an existing
        folder (not named like an image) gets ``<task id>`` inside it, typed so. A file already
        present is kept only when the journal records that this task's URL wrote it and it is
        still that complete image; anything else there is replaced (an image of another task
        is never "already complete").

        Raises:
            StorageError: the file could not be written (disk full, permission denied, a
                folder in the way); ``task_id`` and ``path`` say which.
            BadResponseError: an image could not be fetched (expired URL, not an image, too
                large) after retries; ``task_id`` names the task.
        """
        if dest.suffix.lower() not in IMAGE_SUFFIXES and await anyio.Path(dest).is_dir():
            # download(result, "images") means into that folder: it wrote images.png beside it.
            dest = dest / safe_name(result.task_id)
        paths = []
        for url, target in zip(result.urls, targets(result, dest), strict=True):
            kept = await self._kept(result.task_id, url, target)
            if kept is not None:
                paths.append(kept)
                continue
            async with self._semaphore:
                path, stamp = await self._fetch(result, url, target)
            paths.append(path)
            events = self._events
            if events.active:
                events.emit(
                    Downloaded(
                        provider=result.provider,
                        at=self._clock.now(),
                        task_id=result.task_id,
                        account=events.account,
                        url=url,
                        path=str(path),
                        size=stamp[0],
                    )
                )
            if self._journal is not None:
                try:
                    await self._journal.record_file(
                        path, task_id=result.task_id, url=url, stamp=stamp
                    )
                # Any failure: the image is written; without its record a rerun fetches again.
                except Exception as exc:
                    _log.warning("could not record %s in the journal: %s", path, exc)
        return paths

    async def _kept(self, task_id: str, url: str, target: Path) -> Path | None:
        # Only the journal can say a file is this task's: two tasks' images look alike.
        if self._journal is None:
            return None
        try:
            recorded = await self._journal.written_file(task_id, url)
        # Any failure: an unreadable record is no record, and the image is fetched again.
        except Exception:
            return None
        if recorded is None:
            return None
        path, stamp = recorded
        if not await anyio.to_thread.run_sync(_unchanged, path, stamp, target):
            return None
        return target.with_name(path.name)  # as the caller named it (the journal's is absolute)

    async def _fetch(
        self, result: ImageResult, url: str, target: Path
    ) -> tuple[Path, tuple[int, int]]:
        last: BadResponseError | None = None
        for attempt in range(self._retry.attempts):
            if self._closed:
                raise _closed(result)
            if self._session is None:
                self._session = aiohttp.ClientSession()
            try:
                return await self._attempt(result, url, target)
            except BadResponseError as exc:
                if not exc.retryable:
                    raise
                last = exc
                if attempt + 1 < self._retry.attempts:
                    wait = delay(attempt, self._retry, self._random)
                    if self._events.active:
                        self._events.emit(_retrying(result, self._clock.now(), exc, wait, attempt))
                    await self._clock.sleep_until(self._clock.now() + wait)
                continue
            except _WriteError as exc:
                raise StorageError(
                    f"cannot write {exc.path}: {exc.reason}",
                    task_id=result.task_id,
                    path=str(exc.path),
                ) from None
        assert last is not None
        raise last

    async def _attempt(
        self, result: ImageResult, url: str, target: Path
    ) -> tuple[Path, tuple[int, int]]:
        # A task of its own, so that aclose() can stop it: a closed session does not wake a
        # read waiting on a slow host. The caller's cancel reaches it through the await.
        job = asyncio.ensure_future(self._stream(result, url, target))
        self._running.add(job)
        job.add_done_callback(self._running.discard)
        try:
            return await job
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self._closed and not (current is not None and current.cancelling()):
                raise _closed(result) from None
            raise

    async def _stream(
        self, result: ImageResult, url: str, target: Path
    ) -> tuple[Path, tuple[int, int]]:
        if self._session is None:  # closed between the attempt's start and this task's run
            raise _closed(result)

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
                try:
                    tmp, handle = _open_temporary(target)
                except OSError as exc:
                    raise _WriteError(target, exc) from None
                try:
                    size = 0
                    head = b""
                    async for chunk in resp.content.iter_chunked(_CHUNK):
                        size += len(chunk)
                        if size > self._max_bytes:
                            raise error("image larger than the size cap", 200, retryable=False)
                        if len(head) < 16:
                            head += chunk[: 16 - len(head)]
                        try:
                            await anyio.to_thread.run_sync(handle.write, chunk)
                        except OSError as exc:
                            raise _WriteError(target, exc) from None
                    if resp.content_length is not None and size != resp.content_length:
                        raise error("image cut short", 200, retryable=True)
                    real = image_suffix(head)
                    suffix = real or _CONTENT_TYPES.get(resp.content_type, ".bin")
                    path = named(target, suffix)
                    if (
                        real is not None
                        and _SAME.get(path.suffix.lower(), path.suffix.lower()) != real
                    ):
                        # The caller named the file: it is kept, and the mismatch said.
                        said = _MISMATCHES.get()
                        if said is not None:
                            said.append((path, real))
                        else:
                            _log.warning(
                                "%s holds %s bytes (task %s): kept at the path asked for",
                                path,
                                IMAGE_KINDS[real],
                                result.task_id,
                            )
                    try:
                        stamp = await anyio.to_thread.run_sync(_commit, handle, tmp, path)
                    except OSError as exc:
                        raise _WriteError(path, exc) from None
                    if _log.isEnabledFor(logging.DEBUG):
                        # A request as a status check is: NANOBANANA_LOG=debug showed none
                        # of the downloads, so a rerun's log looked short of requests.
                        _log.debug(
                            "%s task %s: image download HTTP %d, %d bytes from %s",
                            result.provider,
                            result.task_id,
                            resp.status,
                            size,
                            _shown_url(url),
                        )
                    return path, stamp
                finally:
                    # Closing flushes: on a full disk that raises again, over the real error.
                    with contextlib.suppress(OSError):
                        handle.close()
                    tmp.unlink(missing_ok=True)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise error(type(exc).__name__, 0, retryable=True) from None

    async def aclose(self) -> None:
        """Stop the downloads in progress (they raise ``ClientClosedError``, their temporary
        files removed) and close the download session."""
        self._closed = True
        running = list(self._running)
        for job in running:
            job.cancel()
        try:
            if running:
                await asyncio.wait(running)
        finally:
            # Also when this close is cancelled (a second Ctrl-C): the session is released.
            if self._session is not None:
                session, self._session = self._session, None
                await session.close()


def _retrying(
    result: ImageResult, now: float, exc: BadResponseError, wait: float, attempt: int
) -> Retrying:
    # status 0: no answer (aiohttp's error or a timeout, named in the message).
    status = exc.status or 0
    if status >= 500:
        cause = str(status)
    elif status == 0:
        cause = "timeout" if "Timeout" in exc.message else "reset"
    else:
        cause = "bad_response"  # cut short
    return Retrying(
        provider=result.provider,
        at=now,
        task_id=result.task_id,
        operation="download",
        cause=cause,
        delay=wait,
        attempt=attempt + 2,
    )


def _closed(result: ImageResult) -> ClientClosedError:
    return ClientClosedError(
        f"the client was closed while task {result.task_id}'s image was downloading: "
        "download the result again with an open client",
        task_id=result.task_id,
        model=result.model,
    )


class _WriteError(Exception):
    # A file-system failure while writing ``path`` (kept apart from the network's OSErrors).
    def __init__(self, path: Path, exc: OSError) -> None:
        super().__init__(path)
        self.path = path
        self.reason = exc.strerror or type(exc).__name__


def _names(target: Path) -> set[str]:
    # The names ``target`` may have been written under (see ``named``).
    if target.suffix.lower() in IMAGE_SUFFIXES:
        return {target.name}
    return {target.name + suffix for suffix in (*IMAGE_SUFFIXES, ".bin")}


def _unchanged(path: Path, stamp: tuple[int, int], target: Path) -> bool:
    # The recorded file is where this download goes, and still as written: same size and
    # modification time (a file edited, cut short or replaced since is fetched again).
    if path.parent != target.absolute().parent or path.name not in _names(target):
        return False
    try:
        info = path.stat()
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and (info.st_size, info.st_mtime_ns) == stamp


def _open_temporary(path: Path) -> tuple[Path, IO[bytes]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its 0600 mode would ignore the user's umask for an image they asked for.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
    return tmp, tmp.open("xb")


def _commit(handle: IO[bytes], tmp: Path, path: Path) -> tuple[int, int]:
    # Returns the file's size and modification time, which the journal records.
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
    if path.is_dir():
        raise IsADirectoryError(21, "Is a directory", str(path))
    info = os.stat(tmp)
    tmp.replace(path)
    return info.st_size, info.st_mtime_ns


def _shown_url(url: str) -> str:
    """``url`` as a log line shows it: host and path, no query (signed image URLs carry
    their token there), no user info."""
    try:
        shown = yarl.URL(url)
        return str(shown.with_user(None).with_query(None).with_fragment(None))
    except (TypeError, ValueError):
        return "(unreadable URL)"
