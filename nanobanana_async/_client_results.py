"""ClientResults: a Client's public methods beyond one request: ``resume`` a task made earlier,
``as_completed`` for many, ``download`` a result, ``statistics`` (a private base of Client, kept
apart so ``_client.py`` stays small; does I/O)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ._bulk import BulkItem, as_completed
from ._client_base import ClientBase
from ._models import ImageRequest, ImageResult
from ._scheduler._submit import check_resume
from ._stats import ClientStatistics, snapshot
from ._task import Task


class ClientResults(ClientBase):
    """The part of :class:`Client` that works on tasks and results beyond a single submit."""

    if TYPE_CHECKING:
        # Client's own; as_completed submits through it.
        async def submit(self, request: ImageRequest, *, key: str | None = None) -> Task: ...

    async def download(self, result: ImageResult, dest: str | Path) -> list[Path]:
        """Save a result's images: ``dest`` for one image, ``dest-1``, ``dest-2`` … for more.

        A ``dest`` ending in an image suffix (``.png``, ``.jpg``, ``.jpeg``, ``.webp``,
        ``.gif``) is written exactly there, whatever the image's type (a mismatch is logged as
        a WARNING); any other ``dest`` (``out/cat``) gets the suffix of the bytes' real type
        (``out/cat.jpg``); an existing folder ``out`` gets ``out/<task id>.png`` (or
        ``.jpg`` …). Streams with a 64 MiB cap per image, writes through a temporary
        file and a rename (no half files), replaces what was there unless the client's
        journal records that this task wrote that file, checks the content type, retries
        transient failures, and runs at most 8 downloads at once per client. The API key is
        never sent to image hosts.

        Returns:
            the paths written (or kept).

        Raises:
            BadResponseError: an image could not be fetched (for example an expired URL);
                ``task_id`` names the task.
            StorageError: a file could not be written; ``task_id`` and ``path`` say which.
            ClientClosedError: the client was closed.
        """
        self._life.check_open(result.task_id)
        return await self._life.downloader.download(result, Path(dest))

    def resume(self, task_id: str, *, model: str, timeout: float | None = None) -> Task:
        """Track a task submitted earlier (by another process, or before a crash).

        Must be called inside ``async with client`` (the client must be started). The task
        takes a concurrent-task slot when one is free.

        Args:
            task_id: the provider's task id.
            model: the model it was submitted with (canonical name or provider id).
            timeout: seconds to keep checking; None uses the client's default.

        Raises:
            InvalidRequestError: an empty task id, a model the provider does not offer, or a
                timeout that is not a positive number of seconds.
        """
        model = check_resume(self._settings, task_id, model, timeout)
        self._life.check_open()
        return self._life.connected().resume(task_id, model, timeout=timeout)

    async def as_completed(
        self, requests: Iterable[BulkItem] | AsyncIterable[BulkItem]
    ) -> AsyncIterator[Task]:
        """Submit many requests with back-pressure and yield each task once it has ended.

        Requests are pulled from the iterable only as concurrent-task slots free up, so a
        million-line generator never means a million coroutines. Every yielded task is done:
        ``await task`` returns its result or raises its error. A request refused before
        acceptance yields a task with ``id`` None whose await raises that error.
        Items are requests, prompts (strings, default settings), or ``(key, request)`` pairs
        whose key names the task in the journal and is given back as ``task.key``.
        """
        submitter = await self._life.started()
        window = submitter.conn.account.ledger.configured.concurrent_tasks
        async for task in as_completed(lambda r, k: self.submit(r, key=k), requests, window):
            yield task

    def statistics(self) -> ClientStatistics:
        """A snapshot of the account's counters (zeros before the first request)."""
        submitter = self._life.submitter
        account = submitter.conn.account if submitter is not None else None
        return snapshot(account, self._settings.limits, self._settings.retry)
