"""Secret: the key masked where it stands as a token, never inside another word; found
wherever a traceback would print it."""

from __future__ import annotations

import base64
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nanobanana_async._redact import UNAMBIGUOUS, Secret, _pattern, in_exception, without_userinfo


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


def test_a_short_key_inside_a_longer_word_is_left_alone() -> None:
    """Below 8 characters a key inside a word is not the key: masking there would corrupt
    the answer; as a token of its own it is masked."""
    body = b'{"taskId": "xsk-A/cd"}'
    key = Secret("sk-A/cd")
    assert key.redact_bytes(body) is body
    assert key.redact_bytes(b'{"m": "bad key sk-A/cd"}') == b'{"m": "bad key ***"}'
    assert not key.appears_in("apikey_sk-A/cd_v2")


KEY = "nb-CANARY-7f3a9c2e51d84b06"


@pytest.mark.parametrize(
    "echo",
    [
        f"apikey_{KEY}_v2",  # issue 20, item 12d: next to word characters on both sides
        f"x{KEY}",
        f"{KEY}9",
        f"key={KEY}&x=1",
        KEY.replace("-", "\\u002d"),  # JSON-escaped, inside nothing
        "prefix_" + KEY.replace("-", "\\u002D") + "_suffix",
    ],
)
def test_a_key_of_8_characters_or_more_is_masked_wherever_it_stands(echo: str) -> None:
    """An unambiguous key is masked inside words too: in bodies, text and what is checked."""
    key = Secret(KEY)
    body = f'{{"message": "rejected {echo}"}}'.encode()
    assert b"CANARY" not in key.redact_bytes(body)
    assert "CANARY" not in key.redact_token(f"rejected {echo}")
    assert "CANARY" not in key.redact(f"rejected {echo}")
    assert key.appears_in(f"rejected {echo}")


def _base64_echoes(key: str) -> dict[str, str]:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    return {
        "bearer": f"Bearer {b64(key)}",
        "basic user:key": f"Basic {b64('apikey:' + key)}",
        "basic key:": f"Basic {b64(key + ':')}",
        "basic u:key": f"Basic {b64('u:' + key)}",
        "urlsafe": base64.urlsafe_b64encode(("ab:" + key).encode()).decode(),
        "json-escaped slash": json.dumps(b64("xy:" + key + "?>"))[1:-1].replace("/", "\\/"),
    }


def _key_pieces_decoded(text: str) -> list[bytes]:
    """Six-byte pieces of KEY that some base64 decoding of ``text`` shows, at any offset."""
    found = []
    for run in re.findall(r"[A-Za-z0-9+/_-]+", text.replace("\\/", "/")):
        for start in range(4):
            chunk = run[start:]
            chunk = chunk[: len(chunk) // 4 * 4].replace("-", "+").replace("_", "/")
            raw = base64.b64decode(chunk)
            found += [raw for i in range(len(KEY) - 5) if KEY[i : i + 6].encode() in raw]
    return found


@pytest.mark.parametrize("name", sorted(_base64_echoes(KEY)))
def test_the_base64_form_of_a_key_is_masked(name: str) -> None:
    """A key echoed base64-encoded (Basic credentials, a Bearer header) is masked: no
    decoding of what is left shows six bytes of it, whatever stood before it."""
    key = Secret(KEY)
    echo = _base64_echoes(KEY)[name]
    assert _key_pieces_decoded(echo)  # the echo does hold the key
    assert key.appears_in(f"sent {echo}")
    for masked in (key.redact_token(f"sent {echo}"), key.redact_bytes(echo.encode()).decode()):
        assert "***" in masked
        assert not _key_pieces_decoded(masked), masked


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://u:pw@host/api/v1", "http://host/api/v1"),
        ("https://user@host:8443", "https://host:8443"),
        ("https://u:p@ss@host/x?q=a@b#c@d", "https://host/x?q=a@b#c@d"),
        ("http://host/a@b", "http://host/a@b"),
        ("http://host?next=u:p@x", "http://host?next=u:p@x"),
        ("https://api.crun.ai", "https://api.crun.ai"),
    ],
)
def test_without_userinfo_drops_the_user_and_password_before_the_host_only(
    url: str, shown: str
) -> None:
    """Up to the authority's last "@" (a password may hold one), never an "@" in the path,
    query or fragment."""
    assert without_userinfo(url) == shown


def _masked_by_pattern(key: str, body: bytes) -> bytes:
    # The masking pattern applied to every body, with no fast exit in front of it.
    return re.sub(_pattern(key).encode(), b"***", body)


_SHORT_KEYS = ["k", "sk-A/cd", 'a"b\\c', "x9"]
_AROUND = ["", " ", "a", "_", "\\n", "\\t", "\\u00a0", "\\u00A0x", "\\\\", "\\/", '"']


@pytest.mark.parametrize("key", _SHORT_KEYS)
def test_a_short_key_is_found_by_the_fast_exit_wherever_the_pattern_masks_it(key: str) -> None:
    """The short key's quick test before the search lets no spelling through: bare, after an
    escape, escaped within, at either end of the body; and leaves a body without one alone."""
    spellings = {
        key,
        json.dumps(key)[1:-1],
        json.dumps(key, ensure_ascii=False).replace("/", "\\/"),
        "".join(f"\\u{ord(c):04X}" for c in key),
        key[:1] + "".join(f"\\u{ord(c):04x}" for c in key[1:]),
    }
    secret = Secret(key)
    masked = 0
    for spelling in spellings:
        for before in _AROUND:
            for after in _AROUND:
                body = f"{before}{spelling}{after}".encode()
                expected = _masked_by_pattern(key, body)
                assert secret.redact_bytes(body) == expected, body
                masked += expected != body
    assert masked > len(spellings) * 10  # most of them are the key, and were masked
    answer = b'{"code":200,"data":{"taskId":"t","resultJson":"{\\"u\\": [\\"x\\"]}"}}'
    assert secret.redact_bytes(answer) is answer


@settings(max_examples=300, deadline=None)
@given(key=st.text(min_size=1, max_size=UNAMBIGUOUS - 1), body=st.text(max_size=40))
def test_short_key_fast_exit_agrees_with_the_pattern_on_any_body(key: str, body: str) -> None:
    """Whatever the key and the body (the key put in at a random place), the answer is
    masked exactly as the masking pattern alone masks it."""
    secret = Secret(key)
    for data in (body.encode(), (body[:7] + key + body[7:]).encode()):
        assert secret.redact_bytes(data) == _masked_by_pattern(key, data)
