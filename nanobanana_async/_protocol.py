"""ImageClient: the surface a Client and a Router share, so code can take either (no I/O)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import Protocol, Self

from ._bulk import BulkItem
from ._models import (
    AspectRatio,
    ImageRequest,
    ImageResult,
    ModelName,
    OptionValue,
    OutputFormat,
    Resolution,
)
from ._stats import ClientStatistics
from ._task import Task


class ImageClient(Protocol):
    """What :class:`Client` and :class:`Router` both offer: annotate with it to accept either.

    Each method means what it means on ``Client``; see there.
    """

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def aclose(self) -> None:
        """Stop tracking tasks and release what is open."""

    async def generate(
        self,
        prompt: str,
        *,
        model: ModelName | str = "nano-banana-2",
        resolution: Resolution | str | None = None,
        aspect_ratio: AspectRatio | str | None = None,
        image_urls: str | Iterable[str] = (),
        output_format: OutputFormat | str | None = None,
        google_search: bool | None = None,
        timeout: float | None = None,
        num_images: int | None = None,
        watermark: str | None = None,
        callback_url: str | None = None,
        provider_options: Mapping[str, OptionValue] | None = None,
    ) -> ImageResult:
        """Generate one image (or ``num_images``) and wait for it."""
        ...

    async def submit(self, request: ImageRequest, *, key: str | None = None) -> Task:
        """Submit a task and return once it was accepted."""
        ...

    def as_completed(
        self, requests: Iterable[BulkItem] | AsyncIterable[BulkItem]
    ) -> AsyncIterator[Task]:
        """Submit many requests with back-pressure; yield each task once it has ended."""
        ...

    def resume(self, task_id: str, *, model: str, timeout: float | None = None) -> Task:
        """Track a task submitted earlier."""
        ...

    def statistics(self) -> ClientStatistics:
        """A snapshot of the counters."""
        ...
