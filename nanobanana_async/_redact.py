"""Secret values and redaction of text that could hold one (no I/O)."""

from __future__ import annotations

import hashlib
import re
from typing import Final, TypeVar

_MASK: Final = "***"
_WORD: Final = "[A-Za-z0-9_]"


E = TypeVar("E", bound=BaseException)

# What a JSON serializer may write for a character: itself, \uXXXX (hex in either case), and a
# backslash before "/" (PHP's default), '"' and "\".
_BACKSLASHED: Final = frozenset('/"\\')


def _spelled(value: str) -> str:
    # A pattern for ``value`` however JSON spells it, where no word character touches it.
    # Bodies are masked before they are decoded, and decoding would turn an escaped key back
    # into the key ("nbk\/Q29u" from PHP, "ab\u002Bcd" from .NET's default encoder).
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
    # Also right after an escape that ends in a letter or digit ("\n", "\u00a0"): it is no
    # part of a word, and masking there too errs on the safe side.
    before = rf"(?:(?<!{_WORD})|(?<=\\[bfnrt])|(?<=\\u[0-9a-fA-F]{{4}}))"
    return before + "".join(parts) + f"(?!{_WORD})"


class Secret:
    """An API key that never shows itself in a repr, a str or a log line.

    The raw value is read only by the transport's header builder, through :meth:`reveal`.
    """

    __slots__ = ("__bytes_token", "__markers", "__text_token", "__value")

    def __init__(self, value: str) -> None:
        self.__value = value
        # What redact_bytes looks for before it searches: the key itself, or an escape that
        # could spell part of it (most answers hold neither).
        markers = [value, "\\u"] + ["\\" + c for c in sorted(_BACKSLASHED & set(value))]
        self.__markers = tuple(m.encode() for m in markers) if value else ()
        # Compiled on first need: most keys never show up in an answer or an error.
        self.__bytes_token: re.Pattern[bytes] | None = None
        self.__text_token: re.Pattern[str] | None = None

    def reveal(self) -> str:
        """Return the raw value. Only the header builder calls this."""
        return self.__value

    def redact(self, text: str) -> str:
        """Return ``text`` with every occurrence of the secret replaced by ``***``."""
        return text.replace(self.__value, _MASK) if self.__value else text

    def redact_bytes(self, data: bytes) -> bytes:
        """Return ``data`` (an answer body) with the secret (UTF-8, or however JSON escapes
        it) replaced by ``***`` wherever it stands as a token of its own.

        A provider quotes a rejected key as a whole ("invalid key: sk-…"); inside a longer
        word it is not the key, and masking it there would corrupt the answer (a key "k" made
        crun's ``task_id`` read ``tas***_id``).
        """
        # The fast exit: every answer passes here, and almost none holds the key.
        if not any(marker in data for marker in self.__markers):
            return data
        token = self.__bytes_token
        if token is None:
            token = self.__bytes_token = re.compile(_spelled(self.__value).encode())
        return token.sub(_MASK.encode(), data)

    def redact_token(self, text: str) -> str:
        """Return ``text`` with the secret replaced by ``***`` wherever it stands as a token of
        its own: :meth:`redact_bytes` for text (exception messages, reprs)."""
        if not self.appears_in(text):
            return text
        return self.__text_pattern().sub(_MASK, text)

    def appears_in(self, text: str) -> bool:
        """Whether the secret stands in ``text`` as a token of its own (JSON escapes too)."""
        value = self.__value
        return (
            bool(value)
            and (value in text or "\\" in text)
            and self.__text_pattern().search(text) is not None
        )

    def __text_pattern(self) -> re.Pattern[str]:
        token = self.__text_token
        if token is None:
            token = self.__text_token = re.compile(_spelled(self.__value))
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
    """A short, stable name for an API key that reveals nothing of it: 8 hex digits of its SHA-256."""
    if not key:
        return "nokey"
    return hashlib.sha256(key.encode()).hexdigest()[:8]
