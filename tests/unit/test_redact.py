"""Secret: the key masked where it stands as a token, never inside another word; found
wherever a traceback would print it."""

from __future__ import annotations

import pytest

from nanobanana_async._redact import Secret, in_exception


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


def test_text_is_masked_like_a_body() -> None:
    """Exception text follows the body's rule: "took" keeps its "k", a quoted key is masked."""
    key = Secret("k")
    assert key.redact_token("took 3 s; bad key k") == "took 3 s; bad key ***"
    assert not key.appears_in("took 3 s")
    long = Secret("sk-live-abc123")
    assert long.redact_token("Authorization: Bearer sk-live-abc123") == "Authorization: Bearer ***"


def test_the_key_is_found_wherever_a_traceback_prints() -> None:
    """In a cause, a context, a note or a group's member: each is printed by a traceback."""
    key = Secret("sk-live-abc123")

    def chained(kind: str) -> BaseException:
        inner = OSError("Bearer sk-live-abc123")
        outer = RuntimeError("failed")
        if kind == "cause":
            outer.__cause__ = inner
        elif kind == "context":
            outer.__context__ = inner
        elif kind == "note":
            outer.add_note("sent Bearer sk-live-abc123")
        else:
            # A member's own cause: the group's repr shows the member, not what is behind it.
            outer.__cause__ = inner
            return ExceptionGroup("several", [ValueError("fine"), outer])
        return outer

    for kind in ("cause", "context", "note", "group"):
        assert in_exception(key, chained(kind)), kind
    assert not in_exception(key, RuntimeError("failed"))


@pytest.mark.parametrize(
    "body",
    [
        b'{"m": "invalid key:\\nsk-Ab/c+d"}',  # right after an escaped newline
        b'{"m": "key:\\u00a0sk-Ab/c+d"}',  # right after an escaped no-break space
        b'{"m": "key sk-Ab\\/c\\u002Bd"}',  # escaped within
    ],
    ids=["after-newline", "after-unicode-escape", "within"],
)
def test_a_key_next_to_or_inside_json_escapes_is_masked(body: bytes) -> None:
    """An escape that ends in a letter or digit is no part of a word: the key after it is
    the key, and decoding would show it."""
    masked = Secret("sk-Ab/c+d").redact_bytes(body)
    assert b"***" in masked
    assert b"Ab" not in masked


def test_a_key_inside_a_longer_word_is_left_alone() -> None:
    """Not the key: masking inside a word would corrupt the answer."""
    body = b'{"taskId": "xsk-Ab/c+d"}'
    assert Secret("sk-Ab/c+d").redact_bytes(body) is body
