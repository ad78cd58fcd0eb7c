"""Callback tokens: minted per submit, verified in constant time, typed errors only."""

from __future__ import annotations

import pytest

import nanobanana_async as nb
from nanobanana_async.webhooks._verify import mint, verify

SECRET = b"k" * 32


def test_round_trip() -> None:
    """A minted token verifies to its nonce."""
    assert verify(SECRET, mint(SECRET, "abcdefgh1234")) == "abcdefgh1234"


@pytest.mark.parametrize(
    "token",
    [
        "",
        ".",
        "abcdefgh1234",
        "abcdefgh1234.",
        ".sig",
        "short.sig",
        "abcdefgh1234.AAAAAAAAAAAAAAAAAAAAAA",
        "abcdefgh1234.\u00e9\u00e9",
        mint(b"other-secret" * 3, "abcdefgh1234"),
        "../../etc.passwd",
    ],
)
def test_bad_tokens_raise_the_typed_error(token: str) -> None:
    """Malformed or foreign tokens raise WebhookVerificationError, never a bare error."""
    with pytest.raises(nb.WebhookVerificationError):
        verify(SECRET, token)
