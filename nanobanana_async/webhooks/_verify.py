"""Callback capability tokens: minted per submit, verified in constant time (pure, no I/O).

No provider signs its callbacks, so the callback URL itself carries the proof: a token
``{nonce}.{signature}`` where the signature is HMAC-SHA256 of the nonce under the receiver's
secret. The nonce is minted before submit (the task id is not known yet) and bound to the task
reference once the provider accepts it; a callback must then name that same task.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Final

from .._errors import WebhookVerificationError

_SIG_BYTES: Final = 16
_NONCE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def _signature(secret: bytes, nonce: str) -> str:
    digest = hmac.new(secret, nonce.encode("ascii"), hashlib.sha256).digest()[:_SIG_BYTES]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def mint(secret: bytes, nonce: str) -> str:
    """The URL-safe token for ``nonce`` (letters, digits, ``-`` and ``_``, 8-64 long)."""
    if not _NONCE.match(nonce):
        raise ValueError("nonce must be 8-64 URL-safe characters")
    return f"{nonce}.{_signature(secret, nonce)}"


def verify(secret: bytes, token: str) -> str:
    """The nonce a token carries, if its signature is ours.

    Raises:
        WebhookVerificationError: the token is malformed or its signature does not match.
    """
    nonce, dot, signature = token.partition(".")
    if not dot or not _NONCE.match(nonce) or not signature:
        raise WebhookVerificationError("malformed callback token")
    if not hmac.compare_digest(
        signature.encode("ascii", "replace"), _signature(secret, nonce).encode("ascii")
    ):
        raise WebhookVerificationError("callback token signature does not match")
    return nonce
