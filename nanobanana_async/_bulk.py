"""as_completed: many submits with back-pressure, each task yielded once it has ended (I/O)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable

from ._errors import InvalidRequestError, NanoBananaError
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
    # Items come from the caller's data at run time (a None from a CSV column, a bare
    # number): each one of the wrong type fails alone, as a bad prompt does, rather than
    # ending the whole loop with a TypeError while the tasks already paid for run on.
    key: object = None
    request: object = item
    if isinstance(item, tuple) and len(item) == len(("key", "request")):
        key, request = item
    name = key if isinstance(key, str) else None
    try:
        if isinstance(request, str):
            request = ImageRequest(prompt=request)
        if not isinstance(request, ImageRequest) or (name is None and key is not None):
            raise InvalidRequestError(
                [
                    "an item must be a prompt, an ImageRequest or a (key, ImageRequest) pair, "
                    f"got {_kind(item)} @ $"
                ]
            )
        task = await submit(request, name)
    except NanoBananaError as exc:
        failed = Task(request if isinstance(request, ImageRequest) else None, name)
        failed._resolve(None, exc)
        return failed
    with contextlib.suppress(NanoBananaError):
        await task  # the caller reads the error from the yielded task
    return task


def _kind(item: object) -> str:
    if isinstance(item, tuple):
        return "(" + ", ".join(type(part).__name__ for part in item) + ")"
    return type(item).__name__


async def _aiter(items: Iterable[BulkItem] | AsyncIterable[BulkItem]) -> AsyncIterator[BulkItem]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
