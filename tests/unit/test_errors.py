"""Every exception the package exports survives pickling, and refusals read as refusals."""

from __future__ import annotations

import inspect
import pickle

import pytest

import nanobanana_async as nb
from nanobanana_async.providers._answers import error_for

# Read through __all__: the package loads its names lazily, so vars(nb) holds only those some
# earlier import happened to touch, and the list would depend on which tests ran first.
ERROR_CLASSES = sorted(
    (
        obj
        for obj in (getattr(nb, name) for name in nb.__all__)
        if inspect.isclass(obj) and issubclass(obj, nb.NanoBananaError)
    ),
    key=lambda cls: cls.__name__,
)

# Keyword values for every constructor argument any error takes; a new argument without an
# entry here fails test_every_error_round_trips, so a new class is covered or loudly not.
VALUES: dict[str, object] = {
    "message": "something went wrong",
    "errors": ["prompt must not be empty @ $.prompt"],
    "provider": "crun",
    "status": 503,
    "code": "E42",
    "retryable": True,
    "retry_after": 2.5,
    "task_id": "t-1",
    "model": "nano-banana-2",
    "path": "out/cat.png",
    "request": nb.ImageRequest(prompt="a cat"),
    "key": "line-1-abc",
    "account": "0a1b2c3d",
    "task": None,  # a live Task does not cross processes: StorageError drops it when pickled
    "request_id": "req-7f3a",
    "request_line": "POST http://127.0.0.1:9/generateTask/nano-banana-2",
    "body": b'{"code": 503, "message": "down"}',
    "missing": {"callback_url": "nanobananaapi nano-banana"},
}


def build(cls: type[nb.NanoBananaError]) -> nb.NanoBananaError:
    args: list[object] = []
    kwargs: dict[str, object] = {}
    if not inspect.isfunction(cls.__init__):
        return cls(VALUES["message"])  # Exception's own constructor
    for name, param in inspect.signature(cls).parameters.items():
        assert name in VALUES, f"{cls.__name__}({name}=...): add a value to VALUES"
        if param.kind is param.KEYWORD_ONLY:
            kwargs[name] = VALUES[name]
        else:
            args.append(VALUES[name])
    return cls(*args, **kwargs)


def test_the_error_list_is_not_empty() -> None:
    assert len(ERROR_CLASSES) >= 15


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_every_error_round_trips(cls: type[nb.NanoBananaError]) -> None:
    """Type, attributes and message survive pickle (multiprocessing, task queues)."""
    error = build(cls)
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own bytes)
    assert type(copy) is cls
    assert vars(copy) == vars(error)
    assert str(copy) == str(error)
    assert copy.args == error.args


def test_a_raised_error_round_trips_with_its_traceback_dropped() -> None:
    try:
        raise nb.GenerationFailedError("boom", task_id="t9", provider="apixo", model="m", code=7)
    except nb.GenerationFailedError as exc:
        copy = pickle.loads(pickle.dumps(exc))  # noqa: S301 (our own bytes)
    assert (copy.task_id, copy.code, str(copy)) == ("t9", 7, "apixo task t9: boom")


def test_http_200_with_code_401_reads_as_the_providers_refusal() -> None:
    error = error_for("crun", status=200, code=401, message="Unauthorized")
    assert isinstance(error, nb.AuthenticationError)
    assert str(error) == "crun refused the API key (code 401): Unauthorized"
    assert "HTTP 200" not in str(error)


def test_real_http_statuses_keep_their_status_in_the_message() -> None:
    error = error_for("apixo", status=401, code=None, message="bad key")
    assert str(error) == "apixo: HTTP 401: bad key"
    assert str(error_for("crun", status=200, code=402, message="")) == (
        "crun refused the request: insufficient credits (code 402)"
    )


def test_a_404_on_a_known_task_says_the_task_may_be_unknown_there() -> None:
    """A 404 answering a status check of a task id (another `local` client's task, a resume
    against another server) does not claim the path is wrong: it names both causes. A 404 with
    no task id (a create) still points at the path only."""
    check = nb.APIError(
        "Task not found",
        provider="local",
        status=404,
        task_id="t-1",
        request_line="GET http://127.0.0.1:9/api/v1/statusTask/nano-banana-2",
    )
    assert "(no such task there, or no such path: check base_url" in str(check)
    create = nb.APIError(
        "Not Found",
        provider="apixo",
        status=404,
        request_line="POST http://127.0.0.1:9/generateTask/nano-banana-2",
    )
    assert "(no such path: check base_url" in str(create)
