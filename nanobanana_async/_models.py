"""Plain value types shared by the client, the drivers and the scheduler (no I/O)."""

from __future__ import annotations

import datetime as dt
import enum
import math
import re
from collections.abc import ItemsView, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Final, Literal, TypeAlias, TypeVar, cast, overload
from urllib.parse import urlsplit

import attrs

from ._errors import InvalidRequestError
from ._redact import without_userinfo

if TYPE_CHECKING:
    from ._routing import Attempt


class TaskState(enum.Enum):
    """Where a task is, normalized across providers."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"
    """The provider sent a state this library does not know; polling goes on."""

    @property
    def is_terminal(self) -> bool:
        """True for SUCCEEDED and FAILED."""
        return self in (TaskState.SUCCEEDED, TaskState.FAILED)


# urlsplit costs ~5 µs for a URL it has not seen, and every result URL is new. An ASCII
# URL that starts so and has no brackets (IPv6 hosts, which urlsplit checks) is one it
# accepts with a host; anything else is asked of urlsplit.
_PLAIN_HTTP_URL: Final = re.compile(r"https?://[A-Za-z0-9]")


def is_http_url(value: str) -> bool:
    """True when ``value`` is an absolute http(s) URL with a host."""
    given: object = value  # callers may pass anything at run time
    if (
        isinstance(given, str)
        and _PLAIN_HTTP_URL.match(value)
        and value.isascii()
        and "[" not in value
        and "]" not in value
    ):
        return True
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def credentials_problem(url: str, name: str) -> str | None:
    """What is wrong with a user name or password in the http(s) URL ``url``, as a sentence
    about ``name`` that does not echo it; None when it holds none.

    Refused wherever a URL is sent or shown (a base URL, a callback URL, a receiver's public
    URL): it goes to the provider, into a journal, a repr or a message, each a place a
    password could leak from. A password's "/", "?" or "#" ends the authority early, so no
    user part is seen and its start reads as the port: that URL is refused too.
    """
    if without_userinfo(url) != url:
        return f"{name} must not hold a user name or password"
    try:
        port = urlsplit(url).port  # parsed on read: ValueError when it is not a number
    except ValueError:
        port = -1
    if port is not None and not 0 <= port <= 65535:
        return (
            f"{name}'s host part does not parse (a port that is not a number, or a user name "
            "or password with '/', '?' or '#' in it)"
        )
    return None


#: The canonical model names; every provider's own ids are accepted too (``str``).
ModelName: TypeAlias = Literal["nano-banana", "nano-banana-2", "nano-banana-pro"]
#: Resolutions, in either case.
Resolution: TypeAlias = Literal["1K", "2K", "4K", "1k", "2k", "4k"]
#: Every aspect ratio some provider documents; each model's own set is in the README's table.
AspectRatio: TypeAlias = Literal[
    "1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "5:4", "4:5", "21:9",
    "1:4", "4:1", "1:8", "8:1", "auto",
]  # fmt: skip
#: Output formats (``jpg`` is ``jpeg``).
OutputFormat: TypeAlias = Literal["png", "jpeg", "jpg"]


_T = TypeVar("_T")

#: The value of one provider-specific option (see ``ImageRequest.provider_options``).
OptionValue: TypeAlias = str | int | float | bool


class _Options(Mapping[str, OptionValue]):
    """A read-only copy of ``provider_options``: the request is frozen, the caller's dict may
    change later, and a request must still pickle and hash."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, OptionValue]) -> None:
        self._items = dict(items)

    def __getitem__(self, name: str) -> OptionValue:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    # The dict's own get and items: Mapping's get raises and catches a KeyError for every
    # option a create does not set (drivers look theirs up on every create).
    @overload
    def get(self, name: str, /) -> OptionValue | None: ...

    @overload
    def get(self, name: str, /, default: OptionValue | _T) -> OptionValue | _T: ...

    def get(self, name: str, /, default: object = None) -> object:
        return self._items.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def items(self) -> ItemsView[str, OptionValue]:
        return self._items.items()

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __repr__(self) -> str:
        return repr(self._items)

    def __getstate__(self) -> dict[str, OptionValue]:
        return self._items

    def __setstate__(self, items: dict[str, OptionValue]) -> None:
        self._items = items


_NO_OPTIONS: Final = _Options({})  # read-only, so every request without options shares it


def _to_options(value: Mapping[str, OptionValue] | None) -> Mapping[str, OptionValue]:
    given: object = value
    if given is None or (type(given) is dict and not given):  # the default: {}
        return _NO_OPTIONS
    # Anything but a mapping is kept as given, for _problems() to name.
    return _Options(given) if isinstance(given, Mapping) else value  # type: ignore[return-value]


_TEXT_FIELDS: Final = ("resolution", "aspect_ratio", "output_format", "callback_url")


def _to_str_tuple(value: Iterable[str] | str | None) -> tuple[str, ...]:
    # A lone string would otherwise be split into characters.
    if isinstance(value, str):
        return (value,)
    if value is None:  # unset, as None is for every other optional field
        return ()
    try:
        return tuple(value)
    except TypeError:
        # Kept whole so validation names it (@ $.image_urls[0]): tuple(5) was a bare
        # TypeError "'int' object is not iterable" from attrs' converter.
        return (cast(str, value),)


def is_seconds(value: object, *, zero: bool = False) -> bool:
    """A number of seconds a caller may give: finite, not a bool, and positive (or zero when
    ``zero``). One rule for every timeout the public API takes."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value >= 0 if zero else value > 0)
    )


@attrs.frozen(kw_only=True)
class ImageRequest:
    """One image to generate, independent of the provider.

    Args:
        prompt: what to draw; must not be empty.
        model: a canonical name (``nano-banana``, ``nano-banana-2``, ``nano-banana-pro``) or a
            provider's own model id. Default ``nano-banana-2``.
        resolution: ``1K``, ``2K`` or ``4K`` (any case); None lets the provider choose.
        aspect_ratio: such as ``16:9``; None lets the provider choose.
        image_urls: reference image URLs (http or https).
        output_format: ``png`` or ``jpeg`` (``jpg`` is the same); None lets the provider choose.
        google_search: ask for Google Search grounding where the model offers it.
        timeout: seconds to wait for the task in total; None uses the client's default.
        callback_url: where the provider should POST when the task ends (http or https, with
            no user name or password: refused, as the provider stores and logs it). It
            takes the place of a ``Client(callbacks=...)`` receiver for this request, and is
            what nanobananaapi's ``nano-banana`` and ``nano-banana-pro`` require.
        num_images: images to make in one task (nanobananaapi ``nano-banana``: 1-4); the
            result then holds every URL.
        watermark: text to watermark the images with (nanobananaapi ``nano-banana``).
        provider_options: options only one provider has, by its own name, for example
            ``{"provider": "official"}`` for apixo's routing (``auto``, ``value``,
            ``official``). Each driver lists what its provider documents; anything else is
            refused before any request.

    Raises:
        InvalidRequestError: listing every provider-independent problem at once.
    """

    # ``Literal | str``: editors complete the documented values, and anything else still
    # type-checks (provider-native ids, values a provider adds later); validation decides.
    prompt: str
    model: ModelName | str = "nano-banana-2"
    resolution: Resolution | str | None = None
    aspect_ratio: AspectRatio | str | None = None
    image_urls: tuple[str, ...] = attrs.field(default=(), converter=_to_str_tuple)
    output_format: OutputFormat | str | None = None
    google_search: bool | None = None
    timeout: float | None = None
    callback_url: str | None = None
    num_images: int | None = None
    watermark: str | None = None
    provider_options: Mapping[str, OptionValue] = attrs.field(factory=dict, converter=_to_options)

    def __attrs_post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise InvalidRequestError(problems)

    def _problems(self) -> list[str]:
        # Callers may pass anything at run time; the annotations are the contract, not a proof.
        # Each check runs only for a value that is set: this runs for every request.
        errors: list[str] = []
        prompt: object = self.prompt
        if isinstance(prompt, ImageRequest):
            # generate(ImageRequest(...)): "must be a non-empty string" read as a riddle.
            errors.append(
                "prompt must be the prompt's text; pass an ImageRequest to submit() @ $.prompt"
            )
        elif not isinstance(prompt, str) or not prompt.strip():
            errors.append("prompt must be a non-empty string @ $.prompt")
        model: object = self.model
        if not isinstance(model, str) or not model:
            errors.append("model must be a non-empty string @ $.model")
        texts: tuple[object, ...] = (
            self.resolution,
            self.aspect_ratio,
            self.output_format,
            self.callback_url,
        )
        if texts != (None, None, None, None):
            for name, value in zip(_TEXT_FIELDS, texts, strict=True):
                if value is not None and not isinstance(value, str):
                    errors.append(f"{name} must be a string or None @ $.{name}")
        urls: tuple[object, ...] = self.image_urls
        for i, url in enumerate(urls):
            if not isinstance(url, str) or not is_http_url(url):
                errors.append(f"image URL must be an http(s) URL @ $.image_urls[{i}]")
        search: object = self.google_search
        if search is not None and not isinstance(search, bool):
            errors.append("google_search must be a bool or None @ $.google_search")
        timeout: object = self.timeout
        if timeout is not None and not is_seconds(timeout):
            errors.append("timeout must be a positive number of seconds @ $.timeout")
        callback: object = self.callback_url
        if isinstance(callback, str):
            if not is_http_url(callback):
                errors.append("callback URL must be an http(s) URL @ $.callback_url")
            elif problem := credentials_problem(callback, "callback URL"):
                errors.append(f"{problem} @ $.callback_url")
        count: object = self.num_images
        if count is not None and (
            isinstance(count, bool) or not isinstance(count, int) or count < 1
        ):
            errors.append("num_images must be a positive integer @ $.num_images")
        watermark: object = self.watermark
        if watermark is not None and not isinstance(watermark, str):
            errors.append("watermark must be a string or None @ $.watermark")
        given: object = self.provider_options
        if given is _NO_OPTIONS:
            return errors
        if not isinstance(given, Mapping):
            errors.append("provider_options must map names to values @ $.provider_options")
            given = {}
        options: Iterable[tuple[object, object]] = given.items()
        for key, option in options:
            if not isinstance(key, str) or not isinstance(option, str | int | float | bool):
                errors.append(
                    "provider options are names with a string, number or bool value "
                    f"@ $.provider_options.{key}"
                )
        return errors

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> ImageRequest:
        """Build a request from a mapping such as a JSON object or a CSV row.

        Raises:
            InvalidRequestError: every problem at once: unknown or missing keys and invalid
                values, each ``"problem @ $.field"``.
        """
        # cattrs, loaded on first use: importing the package stays cheap.
        from ._structure import structure_request

        return structure_request(data)


@attrs.frozen
class Balance:
    """An account's balance, as the provider's balance endpoint reports it.

    Attributes:
        provider: provider name.
        credits: the provider's raw value (crun: credits; apixo: US dollars).
    """

    provider: str
    credits: float


@attrs.frozen
class TaskRef:
    """Everything needed to poll a task later.

    Attributes:
        provider: provider name.
        task_id: the provider's task id.
        model: the provider's own model id (apixo needs it in the status path).
    """

    provider: str
    task_id: str
    model: str


@attrs.frozen(kw_only=True)
class TaskStatus:
    """One observation of a task's state.

    Attributes:
        state: the normalized state.
        raw_state: the provider's own state value, as text.
        urls: result image URLs (only on success).
        error_code: the provider's failure code, if it failed.
        error_message: the provider's failure message, if it failed.
        content_policy: True when the failure is a content-policy refusal.
        elapsed: seconds from creation to completion as the provider reports them, if it does.
        created: when the provider created the task (Unix seconds), if it says.
    """

    state: TaskState
    raw_state: str
    urls: tuple[str, ...] = ()
    error_code: str | int | None = None
    error_message: str | None = None
    content_policy: bool = False
    elapsed: float | None = None
    created: float | None = None


@attrs.frozen(kw_only=True)
class CallbackHint:
    """What a provider's callback body claims; a hint only, never the truth."""

    task_id: str
    claimed_state: TaskState


@attrs.frozen(kw_only=True)
class ImageResult:
    """A finished task's images.

    Attributes:
        task_id: the provider's task id.
        provider: provider name.
        model: the provider's model id.
        urls: the image URLs, never empty. They expire (24 h on some providers): download soon.
        request: the request, when this process submitted it (None after ``resume``).
        submitted_at: when the task was submitted or resumed (UTC).
        completed_at: when the client saw it finished (UTC).
        attempts: from ``Router.generate``, each account tried and what happened there.
    """

    task_id: str
    provider: str
    model: str
    urls: tuple[str, ...]
    request: ImageRequest | None
    submitted_at: dt.datetime
    completed_at: dt.datetime
    attempts: tuple[Attempt, ...] = ()
