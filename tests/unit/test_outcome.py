"""ending(): what one status answer means for its task, on bare values."""

from __future__ import annotations

import nanobanana_async as nb
from nanobanana_async._scheduler._outcome import ending

REF = nb.TaskRef("apixo", "t1", "nano-banana-2")


def status(state: nb.TaskState, **fields: object) -> nb.TaskStatus:
    return nb.TaskStatus(state=state, raw_state=state.value, **fields)  # type: ignore[arg-type]


def test_running_and_unknown_states_are_not_an_end() -> None:
    for state in (nb.TaskState.QUEUED, nb.TaskState.RUNNING, nb.TaskState.UNKNOWN):
        assert ending(status(state), REF, None, submitted_wall=0.0, now_wall=5.0) is None


def test_success_is_a_result_with_every_url_and_both_times() -> None:
    seen = status(nb.TaskState.SUCCEEDED, urls=("https://i/1.png", "https://i/2.png"))
    result = ending(seen, REF, None, submitted_wall=100.0, now_wall=112.5)
    assert isinstance(result, nb.ImageResult)
    assert result.urls == ("https://i/1.png", "https://i/2.png")
    assert (result.completed_at - result.submitted_at).total_seconds() == 12.5


def test_success_without_a_usable_url_is_an_error_with_the_task_id() -> None:
    for urls in ((), ("ftp://i/1.png",)):
        end = ending(
            status(nb.TaskState.SUCCEEDED, urls=urls), REF, None, submitted_wall=0, now_wall=1
        )
        assert isinstance(end, nb.BadResponseError)
        assert end.task_id == "t1"


def test_failure_is_typed_by_content_policy_and_keeps_the_providers_words() -> None:
    policy = status(
        nb.TaskState.FAILED,
        error_code="CONTENT_VIOLATION",
        error_message="nope",
        content_policy=True,
    )
    end = ending(policy, REF, None, submitted_wall=0, now_wall=1)
    assert isinstance(end, nb.ContentPolicyError)
    assert (end.task_id, end.code) == ("t1", "CONTENT_VIOLATION")
    assert "nope" in str(end)
    plain = ending(status(nb.TaskState.FAILED), REF, None, submitted_wall=0, now_wall=1)
    assert type(plain) is nb.GenerationFailedError
