"""Secret: the key masked where it stands as a token, never inside another word."""

from __future__ import annotations

from nanobanana_async._redact import Secret


def test_a_quoted_key_is_masked_but_a_word_containing_it_is_not() -> None:
    """A short key ("k") must not corrupt an answer ("task_id" stays whole), while the key
    quoted back as a token is masked wherever it stands."""
    key = Secret("k")
    body = b'{"data": {"task_id": "t1"}, "message": "bad key k", "key": "k"}'
    assert key.redact_bytes(body) == (
        b'{"data": {"task_id": "t1"}, "message": "bad key ***", "key": "***"}'
    )
    long = Secret("sk-live-abc123")
    assert long.redact_bytes(b"Bearer sk-live-abc123.") == b"Bearer ***."
    assert long.redact_bytes(b"nothing here") == b"nothing here"
