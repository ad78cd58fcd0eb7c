"""A status answer about another task is unreadable for this one (issue 20, item 12b)."""

from __future__ import annotations

import json

import pytest

import nanobanana_async as nb
from nanobanana_async.providers import DRIVERS

from .helpers import resp

IMAGE = "https://img.test/someone-elses.png"

# One success answer per driver, naming the task "other"; each provider's answer carries the
# id (PROTOCOLS.md 5, "Result / id / time extraction": id, data.task_id, data.taskId x2).
SUCCESS_OF_OTHER: dict[str, object] = {
    "xingchao": {"id": "other", "status": "completed", "image_url": IMAGE},
    "crun": {
        "code": 200,
        "message": "success",
        "data": {"task_id": "other", "status": "success", "result": {"media_urls": [IMAGE]}},
    },
    "nanobananaapi": {
        "code": 200,
        "msg": "success",
        "data": {"taskId": "other", "successFlag": 1, "response": {"resultImageUrl": IMAGE}},
    },
    "apixo": {
        "code": 200,
        "message": "success",
        "data": {
            "taskId": "other",
            "state": "success",
            "resultJson": json.dumps({"resultUrls": [IMAGE]}),
        },
    },
}


@pytest.mark.parametrize("provider", sorted(SUCCESS_OF_OTHER))
def test_a_success_naming_another_task_is_a_bad_response(provider: str) -> None:
    """Another task's image is never read as this task's result."""
    ref = nb.TaskRef(provider, "mine", "nano-banana-2")
    with pytest.raises(nb.BadResponseError, match="other") as info:
        DRIVERS[provider].parse_status(resp(SUCCESS_OF_OTHER[provider]), ref)
    assert info.value.task_id == "mine"
    assert info.value.retryable  # unreadable for this task: it is checked again


@pytest.mark.parametrize("provider", sorted(SUCCESS_OF_OTHER))
def test_a_success_naming_this_task_is_read(provider: str) -> None:
    """The same answer naming the task asked about is its result (the check above is exact)."""
    ref = nb.TaskRef(provider, "other", "nano-banana-2")
    status = DRIVERS[provider].parse_status(resp(SUCCESS_OF_OTHER[provider]), ref)
    assert status.urls == (IMAGE,)
