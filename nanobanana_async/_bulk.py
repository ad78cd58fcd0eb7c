"""as_completed: many submits with back-pressure, each task yielded once it has ended (I/O)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable

from ._errors import NanoBananaError
from ._models import ImageRequest
from ._task import Task

BulkItem = ImageRequest | str | tuple[str, ImageRequest]
Submit = Callable[[ImageRequest, str | None], Awaitable[Task]]


async def as_completed(
    submit: Submit, requests: Iterable[BulkItem] | AsyncIterable[BulkItem], window: int
) -> AsyncIterator[Task]:
    """See ``Client.as_completed``; at most ``window`` submits are pulled and running at once."""
    source = _aiter(requests)
    running: set[asyncio.Task[Task]] = set()
    exhausted = False
    try:
        while True:
            while not exhausted and len(running) < window:
                try:
                    item = await anext(source)
                except StopAsyncIteration:
                    exhausted = True
                    break
                running.add(asyncio.ensure_future(_run_one(submit, item)))
            if not running:
                return
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                yield finished.result()
    finally:
        for pending in running:
            pending.cancel()


async def _run_one(submit: Submit, item: BulkItem) -> Task:
    key, request = item if isinstance(item, tuple) else (None, item)
    try:
        if isinstance(request, str):
            request = ImageRequest(prompt=request)
        task = await submit(request, key)
    except NanoBananaError as exc:
        failed = Task(request if isinstance(request, ImageRequest) else None, key)
        failed._resolve(None, exc)
        return failed
    with contextlib.suppress(NanoBananaError):
        await task  # the caller reads the error from the yielded task
    return task


async def _aiter(items: Iterable[BulkItem] | AsyncIterable[BulkItem]) -> AsyncIterator[BulkItem]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
