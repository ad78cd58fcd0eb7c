"""Secret values and redaction of text that could hold one (no I/O)."""

from __future__ import annotations

import re
from typing import Final

_MASK: Final = "***"


class Secret:
    """An API key that never shows itself in a repr, a str or a log line.

    The raw value is read only by the transport's header builder, through :meth:`reveal`.
    """

    __slots__ = ("__raw", "__value")

    def __init__(self, value: str) -> None:
        self.__value = value
        self.__raw = value.encode()  # what redact_bytes looks for in every answer body

    def reveal(self) -> str:
        """Return the raw value. Only the header builder calls this."""
        return self.__value

    def redact(self, text: str) -> str:
        """Return ``text`` with every occurrence of the secret replaced by ``***``."""
        return text.replace(self.__value, _MASK) if self.__value else text

    def redact_bytes(self, data: bytes) -> bytes:
        """Return ``data`` (an answer body) with the secret (UTF-8) replaced by ``***`` wherever
        it stands as a token of its own.

        A provider quotes a rejected key as a whole ("invalid key: sk-…"); inside a longer
        word it is not the key, and masking it there would corrupt the answer (a key "k" made
        crun's ``task_id`` read ``tas***_id``).
        """
        raw = self.__raw
        if not raw or raw not in data:
            return data
        token = rb"(?<![A-Za-z0-9_])" + re.escape(raw) + rb"(?![A-Za-z0-9_])"
        return re.sub(token, _MASK.encode(), data)

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
