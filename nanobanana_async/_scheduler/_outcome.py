"""What one status answer means for its task: a result, the error it ended with, or still
running (pure, no I/O)."""

from __future__ import annotations

import datetime as dt

from .._errors import BadResponseError, ContentPolicyError, GenerationFailedError, NanoBananaError
from .._models import ImageRequest, ImageResult, TaskRef, TaskState, TaskStatus, is_http_url


def ending(
    status: TaskStatus,
    ref: TaskRef,
    request: ImageRequest | None,
    *,
    submitted_wall: float,
    now_wall: float,
) -> ImageResult | NanoBananaError | None:
    """The task's end if ``status`` shows one (a result, or the error to raise), else None.

    A success without a usable image URL is an error, never a result with no image.
    """
    if status.state is TaskState.SUCCEEDED:
        # A loop, not all() over a generator: that is two calls more per task.
        usable = bool(status.urls)
        for url in status.urls:
            if not is_http_url(url):
                usable = False
                break
        if not usable:
            return BadResponseError(
                "task succeeded without a usable image URL",
                provider=ref.provider,
                status=200,
                task_id=ref.task_id,
            )
        return ImageResult(
            task_id=ref.task_id,
            provider=ref.provider,
            model=ref.model,
            urls=status.urls,
            request=request,
            submitted_at=dt.datetime.fromtimestamp(submitted_wall, tz=dt.UTC),
            completed_at=dt.datetime.fromtimestamp(now_wall, tz=dt.UTC),
        )
    if status.state is TaskState.FAILED:
        cls = ContentPolicyError if status.content_policy else GenerationFailedError
        return cls(
            status.error_message or f"failed ({status.raw_state})",
            task_id=ref.task_id,
            provider=ref.provider,
            model=ref.model,
            code=status.error_code,
        )
    return None
