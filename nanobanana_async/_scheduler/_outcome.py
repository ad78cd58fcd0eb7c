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
        if not status.urls or not all(is_http_url(u) for u in status.urls):
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
            submitted_at=_utc(submitted_wall),
            completed_at=_utc(now_wall),
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


def _utc(wall: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(wall, tz=dt.UTC)
