"""Secret values and redaction of text that could hold one (no I/O)."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Final, TypeVar

_MASK: Final = "***"
_WORD: Final = "[A-Za-z0-9_]"


E = TypeVar("E", bound=BaseException)

# What a JSON serializer may write for a character: itself, \uXXXX (hex in either case), and a
# backslash before "/" (PHP's default), '"' and "\".
_BACKSLASHED: Final = frozenset('/"\\')


#: A key at least this long is masked wherever it stands, inside a word too: no answer holds
#: such a string by chance. A shorter one only as a token of its own (masking the key "k"
#: inside words made crun's ``task_id`` read ``tas***_id``).
UNAMBIGUOUS: Final = 8


def _chars(value: str) -> str:
    # A pattern for ``value`` however JSON spells it: each character itself, \uXXXX (hex in
    # either case), or a backslash before "/" (PHP's default), '"' and "\". Bodies are masked
    # before they are decoded, and decoding would turn an escaped key back into the key
    # ("nbk\/Q29u" from PHP, "ab\u002Bcd" from .NET's default encoder).
    parts = []
    for char in value:
        hexes = "".join(f"[{h}{h.upper()}]" if h.isalpha() else h for h in f"{ord(char):04x}")
        # Longest first, each group atomic: a backslash in the key has overlapping spellings,
        # and trying every mix of them took exponential time.
        alternatives = [r"\\u" + hexes]
        if char in _BACKSLASHED:
            alternatives.append(re.escape("\\" + char))
        alternatives.append(re.escape(char))
        parts.append("(?>" + "|".join(alternatives) + ")")
    return "".join(parts)


def _base64_cores(value: str) -> list[str]:
    """The parts of the key's base64 spelling that do not depend on what stands around it.

    A key is sent base64-encoded as ``Basic`` credentials (``user:key``) or echoed so in a
    ``Bearer`` header: whatever precedes it in the encoded text shifts it by 0, 1 or 2 bytes,
    and the characters whose six bits all come from the key are the same for every text of
    that shift. Standard and URL-safe alphabets both.
    """
    raw = value.encode()
    cores = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode().rstrip("=")
        first = -(-8 * shift // 6)  # the first character whose bits start inside the key
        last = (8 * (shift + len(raw))) // 6  # one past the last one ending inside it
        core = encoded[first:last]
        cores += [core, core.replace("+", "-").replace("/", "_")]
    return sorted(set(cores), key=len, reverse=True)


def _pattern(value: str) -> str:
    """What :class:`Secret` masks: every spelling of a key of ``UNAMBIGUOUS`` characters or
    more, and of its base64 form; a shorter key only where no word character touches it."""
    if len(value) >= UNAMBIGUOUS:
        return "|".join(_chars(v) for v in [value, *_base64_cores(value)])
    # Also right after an escape that ends in a letter or digit ("\n", "\u00a0"): it is no
    # part of a word, and masking there too errs on the safe side.
    before = rf"(?:(?<!{_WORD})|(?<=\\[bfnrt])|(?<=\\u[0-9a-fA-F]{{4}}))"
    return before + _chars(value) + f"(?!{_WORD})"


# The authority's user part: everything from "//" up to its last "@" (a password may hold
# another "@"), and no further than the first "/", "?" or "#", where the authority ends.
_USERINFO: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")


def without_userinfo(url: str) -> str:
    """``url`` without the ``user:password@`` before its host, if it has one.

    What a journal stores and a message shows of a base URL: a password there would
    otherwise reach a file and every "belongs to ... at URL" line.
    """
    return _USERINFO.sub(r"\1", url, count=1)


def _short_markers(value: str, escaped: frozenset[str]) -> str:
    """What redact_bytes looks for before it searches for a key under ``UNAMBIGUOUS``
    characters: the key with no word character on either side, or an escape that could stand
    before it or spell part of it.

    A short key's bare characters are in most answers ("k" in "taskId"), and searching with
    the masking pattern cost ~10 µs per answer; this finds a superset of its matches in ~1 µs.
    The key is matched first and its neighbours checked after (a pattern that starts with a
    lookbehind is tried at every position, 3 times slower).
    """
    key = re.escape(value)
    bare = rf"{key}(?<!{_WORD}{key})(?!{_WORD})"
    # Before the key: \b \f \n \r \t or \uXXXX; within it: \uXXXX or a backslashed
    # character of the key.
    escapes = "[bfnrtu" + "".join(re.escape(c) for c in sorted(escaped)) + "]"
    return bare + r"|\\" + escapes


class Secret:
    """An API key that never shows itself in a repr, a str or a log line.

    The raw value is read only by the transport's header builder, through :meth:`reveal`.
    """

    __slots__ = ("__bytes_token", "__markers", "__text_markers", "__text_token", "__value")

    def __init__(self, value: str) -> None:
        self.__value = value
        # What redact_bytes looks for before it searches: the key itself (or its base64
        # form), or an escape that could spell part of it (most answers hold none).
        spellings = [value, *_base64_cores(value)] if len(value) >= UNAMBIGUOUS else [value]
        escaped = _BACKSLASHED & set("".join(spellings))
        markers = [*spellings, "\\u"] + ["\\" + c for c in sorted(escaped)]
        self.__text_markers = tuple(markers) if value else ()
        # One pass over each answer for all of them (every answer comes through here).
        self.__markers: re.Pattern[bytes] | None = None
        if len(value) >= UNAMBIGUOUS:
            self.__markers = re.compile(b"|".join(re.escape(m.encode()) for m in markers))
        elif value:
            self.__markers = re.compile(_short_markers(value, escaped).encode())
        # Compiled on first need: most keys never show up in an answer or an error.
        self.__bytes_token: re.Pattern[bytes] | None = None
        self.__text_token: re.Pattern[str] | None = None

    def reveal(self) -> str:
        """Return the raw value. Only the header builder calls this."""
        return self.__value

    def redact(self, text: str) -> str:
        """Return ``text`` with every occurrence of the secret replaced by ``***`` (and of its
        spellings that :meth:`redact_token` masks)."""
        if not self.__value:
            return text
        return self.redact_token(text.replace(self.__value, _MASK))

    def redact_bytes(self, data: bytes) -> bytes:
        """Return ``data`` (an answer body) with the secret (UTF-8, or however JSON escapes
        it) replaced by ``***``.

        A key of ``UNAMBIGUOUS`` (8) characters or more is masked wherever it stands, inside a
        word too (``apikey_<key>_v2``), and so is its base64 form (``Basic``/``Bearer``
        credentials echoed back). A shorter key is masked only as a token of its own: inside a
        longer word it is not the key, and masking it there would corrupt the answer (a key
        "k" made crun's ``task_id`` read ``tas***_id``).
        """
        # The fast exit: every answer passes here, and almost none holds the key.
        if self.__markers is None or self.__markers.search(data) is None:
            return data
        token = self.__bytes_token
        if token is None:
            token = self.__bytes_token = re.compile(_pattern(self.__value).encode())
        return token.sub(_MASK.encode(), data)

    def redact_token(self, text: str) -> str:
        """Return ``text`` with the secret replaced by ``***`` by :meth:`redact_bytes`'s rule
        (exception messages, reprs, lines written to files)."""
        if not self.appears_in(text):
            return text
        return self.__text_pattern().sub(_MASK, text)

    def appears_in(self, text: str) -> bool:
        """Whether ``text`` holds the secret as :meth:`redact_token` would mask it."""
        return (
            any(marker in text for marker in self.__text_markers)
            and self.__text_pattern().search(text) is not None
        )

    def __text_pattern(self) -> re.Pattern[str]:
        token = self.__text_token
        if token is None:
            token = self.__text_token = re.compile(_pattern(self.__value))
        return token

    def __repr__(self) -> str:
        return f"Secret('{_MASK}')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.__value == self.__value

    def __hash__(self) -> int:
        return hash(self.__value)

    def __reduce__(self) -> tuple[object, ...]:
        # Pickling would write the key to a file; refuse instead.
        raise TypeError("Secret cannot be pickled")


def _links(exc: BaseException) -> list[BaseException]:
    # Everything a traceback prints: the causes, the contexts and a group's members.
    seen: list[BaseException] = []
    ids: set[int] = set()
    stack = [exc]
    while stack:
        link = stack.pop()
        if id(link) in ids:
            continue
        ids.add(id(link))
        seen.append(link)
        stack += [e for e in (link.__cause__, link.__context__) if e is not None]
        if isinstance(link, BaseExceptionGroup):
            stack += link.exceptions
    return seen


def in_exception(secret: Secret, exc: BaseException) -> bool:
    """Whether ``secret`` shows in the str, repr or notes of ``exc`` or of any exception
    chained to it: what a traceback or a log line would print."""
    for link in _links(exc):
        notes = getattr(link, "__notes__", None)
        texts = [str(link), repr(link), *(notes if isinstance(notes, list) else ())]
        if any(isinstance(t, str) and secret.appears_in(t) for t in texts):
            return True
    return False


def _masked(secret: Secret, value: object) -> object:
    if isinstance(value, str):
        return secret.redact_token(value)
    if isinstance(value, list | tuple):
        return type(value)(_masked(secret, v) for v in value)
    return value


def masked_copy(secret: Secret, exc: E) -> E:
    """A copy of ``exc``, same type, with ``secret`` masked in its arguments and attributes,
    and nothing chained to it (no cause, no context, no traceback)."""
    cls = type(exc)
    copy = cls.__new__(cls)
    copy.args = tuple(_masked(secret, a) for a in exc.args)
    copy.__dict__.update({name: _masked(secret, v) for name, v in vars(exc).items()})
    return copy


def key_fingerprint(key: str | None) -> str:
    """A short, stable name for an API key that reveals nothing of it.

    Returns:
        The first 8 hex digits of the key's SHA-256, or ``"nokey"`` without a key.
    """
    if not key:
        return "nokey"
    return hashlib.sha256(key.encode()).hexdigest()[:8]
