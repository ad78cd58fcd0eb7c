"""The exception tree of nanobanana_async (no I/O).

Each error under its parent class (a second base in parentheses), and when a caller meets it;
the same tree is in README.md "Errors", and ``tests/unit/test_error_tree.py`` checks both
against these classes.

```
NanoBananaError                           every error raised on purpose (.attempts via a Router)
├─ ConfigurationError (ValueError)        bad client or CLI settings: provider, key, limits, loop
│  ├─ WrongAccountError                   the journal holds this prompt's task on another key
│  └─ DuplicateSubmitError                a client on another loop is submitting it; unsent
├─ InvalidRequestError (ValueError)       the request breaks the provider's table; nothing sent
│  └─ RequestRejectedError (+ APIError)   the provider refused its content (400, 422); no task
├─ TransportError                         no usable HTTP answer (from your transport= too)
│  ├─ ConnectError                        no connection: nothing was sent (retried for you)
│  ├─ RequestTimeoutError (TimeoutError)  sent, but no whole answer within Timeouts.request
│  └─ SubmitOutcomeUnknownError           a create may have been accepted: never resubmitted
├─ APIError                               the provider answered with an error (see below)
│  ├─ AuthenticationError                 the key is missing, wrong or not allowed (401, 403)
│  ├─ InsufficientCreditsError            the balance is too low (402)
│  ├─ RateLimitError                      a 429 the retries did not get past; .retry_after
│  ├─ ProviderUnavailableError            a 5xx or maintenance on a call that creates nothing
│  │  └─ ProviderRefusedError             a create refused before acceptance: nothing created
│  └─ BadResponseError                    an answer that cannot be read (malformed, drifted)
├─ TaskError                              an accepted task gave no image; .task_id to resume
│  ├─ GenerationFailedError               the provider says the task failed; .code
│  │  └─ ContentPolicyError               …on content-policy grounds
│  └─ TaskTimeoutError (TimeoutError)     Timeouts.task passed; the task may still finish
├─ NotSupportedError                      no such call on this provider (balance); nothing sent
├─ ClientClosedError                      the client closed while the call or task was pending
├─ CoordinatorUnavailableError            Redis away for Timeouts.coordinator; nothing sent
│  └─ CoordinatorStateError               a Redis key no client writes (.key): delete it
├─ StorageError                           an image or the journal could not be written; .path
└─ WebhookVerificationError (ValueError)  a callback not from a task this client submitted
```

Context lives in keyword-only attributes. Messages never hold secrets, headers or unbounded
bodies: provider text is cut to ``SNIPPET_LIMIT`` bytes by :func:`snippet`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._models import ImageRequest
    from ._routing import Attempt
    from ._task import Task

SNIPPET_LIMIT: Final = 512


def snippet(data: bytes | str | None) -> str:
    """Return at most ``SNIPPET_LIMIT`` bytes of provider text, decoded leniently."""
    if data is None:
        return ""
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
    text = raw[:SNIPPET_LIMIT].decode("utf-8", "replace")
    return text + ("…" if len(raw) > SNIPPET_LIMIT else "")


def _rebuild(cls: type[NanoBananaError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class NanoBananaError(Exception):
    """Base class of every error this library raises on purpose.

    Every error pickles to an equal one (type, attributes, message), so it crosses process
    boundaries (multiprocessing, task queues) intact.

    Attributes:
        attempts: through a ``Router``, each account the request went to and what happened
            there (which accounts were tried and why it moved on); empty otherwise.
    """

    attempts: tuple[Attempt, ...] = ()

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's default reduce calls cls(*args), which breaks on keyword-only
        # attributes; rebuild from the message and the attribute dict instead.
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


class ConfigurationError(NanoBananaError, ValueError):
    """The client was configured wrongly (unknown provider, missing key, bad limits)."""


class InvalidRequestError(NanoBananaError, ValueError):
    """An image request was rejected before any request was sent.

    Its subclass :class:`RequestRejectedError` is the provider's own refusal of what the
    driver's table let through, so ``except InvalidRequestError`` catches bad input wherever
    it was found.

    Attributes:
        errors: one line per problem, each ending in ``@ $.field`` naming the field.
        missing: each field the request lacks that its model requires, with what requires it
            (``{"callback_url": "nanobananaapi nano-banana"}``): a caller with other words
            for that field (a command line's flag) can ask for it in them. Empty otherwise.
    """

    # Read-only (a Mapping): an error that lacks nothing shares the empty default.
    missing: Mapping[str, str] = {}

    def __init__(self, errors: list[str], *, missing: Mapping[str, str] | None = None) -> None:
        self.errors: tuple[str, ...] = tuple(errors)
        if missing:
            self.missing = dict(missing)
        super().__init__("invalid image request: " + "; ".join(self.errors))


class TransportError(NanoBananaError):
    """No usable HTTP response was received."""


class ConnectError(TransportError):
    """The connection could not be made: nothing was sent, so a retry is always safe."""


class RequestTimeoutError(TransportError, TimeoutError):
    """The request was sent but no complete response came back in time."""


class SubmitOutcomeUnknownError(TransportError):
    """A submit may or may not have been accepted (and paid for) by the provider.

    It is never retried automatically: resubmitting could pay for the same image twice. Check
    the provider's dashboard, or submit again yourself if you accept that risk.

    Attributes:
        provider: the provider the submit went to.
        request: the request that was submitted.
    """

    def __init__(self, message: str, *, provider: str, request: ImageRequest) -> None:
        super().__init__(message)
        self.provider = provider
        self.request = request


class APIError(NanoBananaError):
    """The provider answered with an error.

    Attributes:
        provider: provider name.
        status: HTTP status of the response.
        code: the provider's own error code (body ``code``, ``failCode`` …) when it gave one.
        message: the provider's message, cut to 512 bytes.
        retryable: whether the same call may succeed later.
        task_id: the task the call was about, when it was about one.
        request_id: the provider's id for the request (a body field ``request_id`` /
            ``requestId`` / ``trace_id`` / ``traceId``, else an ``x-request-id`` /
            ``request-id`` / ``x-trace-id`` header), for its support; None when the answer
            had none.
        body: the start of the answer's body, at most 512 bytes, the API key masked; "" when
            there was no answer body.
        request_line: ``METHOD URL`` (no query) of a call answered 404 or 405, which most
            often means a wrong ``base_url``; None for other answers.
    """

    retryable_default: bool = False
    #: How the message reads when the provider refused inside an HTTP 200 answer (crun).
    refusal: str = "refused the request"

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status: int,
        code: str | int | None = None,
        retryable: bool | None = None,
        task_id: str | None = None,
        request_id: str | None = None,
        body: bytes | str | None = None,
        request_line: str | None = None,
    ) -> None:
        self.provider = provider
        self.status = status
        self.code = code
        self.message = snippet(message)
        self.retryable = self.retryable_default if retryable is None else retryable
        self.task_id = task_id
        self.request_id = request_id
        self.body = snippet(body)
        self.request_line = request_line
        if status == 200 and code not in (None, 200, "200"):
            # An HTTP 200 carrying an error code is the provider's refusal, not a success.
            parts = [f"{provider} {self.refusal} (code {code})"]
        else:
            parts = [f"{provider}: HTTP {status}"]
            if code is not None:
                parts.append(f"code {code}")
        if request_id is not None:
            parts.append(f"request {request_id}")
        if task_id is not None:
            parts.append(f"task {task_id}")
        if request_line is not None:
            parts.append(request_line)
        # Not super(): for RequestRejectedError the next class is InvalidRequestError, whose
        # constructor takes a list of problems, not the message.
        # The provider's words; the raw body only when it gave none (a bare 502 page).
        text = self.message or self.body
        if request_line is not None:
            # A new user's first call to a server without the provider's path prefix.
            # The paths are appended to base_url, so it keeps the documented prefix (apixo's
            # https://api.apixo.ai/api/v1).
            # A check of a known task id is more often a task this server never made (another
            # `local` client's simulator, a resume against another base_url) than a bad path.
            text += (
                f" (no such {'task there, or no such ' if task_id is not None else ''}path: "
                "check base_url; it keeps the path of the provider's documented URL, such as "
                "/api/v1)"
            )
        NanoBananaError.__init__(self, ", ".join(parts) + (f": {text}" if text else ""))


class RequestRejectedError(APIError, InvalidRequestError):
    """The provider refused the request's content (HTTP or body code 400 or 422).

    Validation refuses only what a provider's documents forbid; everything else is the
    provider's to judge, and this carries its message. Nothing was created.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status: int,
        code: str | int | None = None,
        retryable: bool | None = None,
        task_id: str | None = None,
        request_id: str | None = None,
        body: bytes | str | None = None,
        request_line: str | None = None,
    ) -> None:
        super().__init__(
            message,
            provider=provider,
            status=status,
            code=code,
            retryable=retryable,
            task_id=task_id,
            request_id=request_id,
            body=body,
            request_line=request_line,
        )
        self.errors = (f"{provider}: {self.message or 'refused'} @ $",)


class AuthenticationError(APIError):
    """The API key was missing, wrong or not allowed to do this (401/403)."""

    refusal = "refused the API key"


class InsufficientCreditsError(APIError):
    """The account has too little balance for the request (402)."""

    refusal = "refused the request: insufficient credits"


class RateLimitError(APIError):
    """The provider refused the call for rate limiting (HTTP 429 or body code 429).

    Attributes:
        retry_after: the provider's hint in seconds, when it sent one.
    """

    retryable_default = True
    refusal = "refused the request: rate limited"

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status: int,
        code: str | int | None = None,
        retry_after: float | None = None,
        task_id: str | None = None,
        request_id: str | None = None,
        body: bytes | str | None = None,
    ) -> None:
        super().__init__(
            message,
            provider=provider,
            status=status,
            code=code,
            task_id=task_id,
            request_id=request_id,
            body=body,
        )
        self.retry_after = retry_after


class ProviderUnavailableError(APIError):
    """The provider failed on its side (5xx, maintenance); a later call may work."""

    retryable_default = True


class ProviderRefusedError(ProviderUnavailableError):
    """The provider refused a create before accepting it: no task was created, nothing was paid.

    The driver names which answers mean this, each from its provider's docs (crun: 455
    maintenance, 501, 505 feature disabled). ``retryable`` says whether the same create may be
    accepted later (maintenance ends; a disabled feature stays disabled).
    """


class BadResponseError(APIError):
    """The provider's answer could not be understood (malformed JSON, missing fields)."""

    retryable_default = True


class TaskError(NanoBananaError):
    """A submitted task did not produce images. The task id is always kept for ``resume``.

    Attributes:
        task_id: the provider's task id.
        provider: provider name.
        model: the model the task runs on (needed to resume on apixo).
    """

    def __init__(self, message: str, *, task_id: str, provider: str, model: str) -> None:
        super().__init__(f"{provider} task {task_id}: {snippet(message)}")
        self.task_id = task_id
        self.provider = provider
        self.model = model


class GenerationFailedError(TaskError):
    """The provider reports the task as failed.

    Attributes:
        code: the provider's failure code, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        task_id: str,
        provider: str,
        model: str,
        code: str | int | None = None,
    ) -> None:
        super().__init__(message, task_id=task_id, provider=provider, model=model)
        self.code = code


class ContentPolicyError(GenerationFailedError):
    """The provider refused the prompt or an input image on content-policy grounds."""


class TaskTimeoutError(TaskError, TimeoutError):
    """The task's deadline passed before it finished; it may still finish and be resumed."""


class NotSupportedError(NanoBananaError):
    """The provider documents no such operation (e.g. no balance endpoint); nothing was sent.

    Attributes:
        provider: provider name.
    """

    def __init__(self, message: str, *, provider: str) -> None:
        super().__init__(message)
        self.provider = provider


class ClientClosedError(NanoBananaError):
    """The client was closed while this task was still pending; resume it by id later.

    Attributes:
        task_id: the provider's task id (None when no task was involved).
        model: the model the task runs on.
    """

    def __init__(
        self, message: str, *, task_id: str | None = None, model: str | None = None
    ) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.model = model


class CoordinatorUnavailableError(NanoBananaError):
    """The shared coordinator (Redis) could not be reached for ``Timeouts.coordinator`` seconds.

    Nothing was sent to the provider for this call: without a grant from the coordinator the
    client fails closed rather than risk going over the account's limits. Retrying later is safe.
    """


class CoordinatorStateError(CoordinatorUnavailableError):
    """The shared coordinator (Redis) answered, but one of the account's keys holds what no
    client of this library writes (a wrong type, a cap of 0, a pause without expiry, a lease
    expiring at +inf): waiting would never end, so nothing is sent and the key is named.

    Attributes:
        key: the Redis key at fault ("" when Redis did not say which).
    """

    def __init__(self, message: str, *, key: str) -> None:
        super().__init__(message)
        self.key = key


class StorageError(NanoBananaError):
    """A file could not be written (disk full, permission denied, a folder in the way): an
    image (the task succeeded and was paid: its id is kept for a later download), or the
    journal (before a submit is sent: nothing was sent; after acceptance: the task is still
    tracked, and ``task`` is it).

    Attributes:
        task_id: the provider's task id; None when no task was created.
        path: the file that could not be written.
        task: the accepted task, still tracked, when the journal could not record it.
    """

    def __init__(
        self, message: str, *, task_id: str | None, path: str, task: Task | None = None
    ) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.path = path
        self.task = task

    def __reduce__(self) -> tuple[Any, ...]:
        # The live task belongs to this process's event loop: a copy keeps its id only.
        state = dict(self.__dict__, task=None)
        return (_rebuild, (type(self), self.args, state))


class WebhookVerificationError(NanoBananaError, ValueError):
    """A callback could not be verified as coming from a task this client submitted."""


class WrongAccountError(ConfigurationError):
    """The journal holds this request's task on another account (another provider, or another
    key of it) than the client's: the task is neither checked with this key nor submitted again.
    Run with that account's key (or through a ``Router`` holding it) to resume it.

    Attributes:
        key: the request's journal key.
        provider: the provider holding the task.
        account: the fingerprint of the key holding it (8 hex digits of its SHA-256, never
            the key).
        task_id: the task's id; None when its submit's outcome is unknown.
    """

    def __init__(
        self, message: str, *, key: str, provider: str, account: str, task_id: str | None
    ) -> None:
        super().__init__(message)
        self.key = key
        self.provider = provider
        self.account = account
        self.task_id = task_id


class DuplicateSubmitError(ConfigurationError):
    """Another client sharing this journal (in this process, on another event loop: one on
    the same loop is waited for and re-attached to) began submitting the same request
    between this submit's journal lookup and its own record: this one sent nothing, so only
    the other may be paid. Await the other client's task: a later submit of this request
    re-attaches to it once the provider has accepted it.

    A configuration error, not an unknown outcome: nothing was sent by this call (its slot is
    free again, and a Router does not send it to another account). One client per journal,
    or a ``Router`` over clients, never races itself.

    Attributes:
        key: the request's journal key.
        path: the journal's file.
    """

    def __init__(self, message: str, *, key: str, path: str) -> None:
        super().__init__(message)
        self.key = key
        self.path = path
