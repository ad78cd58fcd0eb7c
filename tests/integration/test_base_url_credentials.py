"""A user name or password in a base URL (F20): refused for every provider before anything is
sent or written, and a journal written before that, which stored one, opens for its host and
keeps it no longer. The password is in no file, log record, repr, exception chain or CLI line."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

import nanobanana_async as nb
from nanobanana_async.cli import main
from nanobanana_async.testing import Latency, Simulator
from tests.conftest import walk_exception

FAST = Latency(median=0.2, sigma=0.1)
PASSWORD = "pw-CANARY-9f3e1d"  # a canary, asserted absent everywhere


def _with_password(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://user:{PASSWORD}@{rest}"


def _files_holding_it(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and PASSWORD.encode() in p.read_bytes()]


def _texts(error: BaseException) -> list[str]:
    return [text for link in walk_exception(error) for text in (str(link), repr(link))]


@pytest.mark.parametrize("provider", ["crun", "apixo", "xingchao", "nanobananaapi"])
async def test_f20_a_password_in_base_url_is_refused_before_anything_is_sent_or_written(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    canary: str,
    provider: str,
) -> None:
    """Client(base_url="http://user:pw@host", journal=...) and NANOBANANA_BASE_URL holding one
    are a ConfigurationError for each provider (crun's x-api-key as well as the bearer keys):
    no request reaches the server, no journal is made, and the password is in no message."""
    caught: list[BaseException] = []
    with caplog.at_level(logging.DEBUG):
        async with Simulator(provider, latency=FAST, api_key=canary) as sim:
            with pytest.raises(nb.ConfigurationError, match="user name or password") as given:
                nb.Client(
                    provider,
                    api_key=canary,
                    base_url=_with_password(sim.base_url),
                    journal=tmp_path / "j.db",
                )
            caught.append(given.value)
            monkeypatch.setenv("NANOBANANA_BASE_URL", _with_password(sim.base_url))
            with pytest.raises(nb.ConfigurationError, match="user name or password") as env:
                nb.Client(provider, api_key=canary, journal=tmp_path / "j.db")
            caught.append(env.value)
            assert sim.stats.total_requests == 0
    texts = [text for error in caught for text in _texts(error)]
    texts += [record.getMessage() for record in caplog.records]
    assert all(PASSWORD not in text and canary not in text for text in texts)
    assert list(tmp_path.iterdir()) == []


async def test_f20_a_journal_that_stored_a_password_opens_for_its_host_and_forgets_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, canary: str
) -> None:
    """A crun journal whose meta holds "http://user:pw@host" (as clients wrote it before they
    refused one) re-attaches its task for a client of that host without the password, and the
    password leaves the file; a client of another URL is told the host, never the password."""
    db = tmp_path / "run.db"
    request = nb.ImageRequest(prompt="a cat")
    with caplog.at_level(logging.DEBUG):
        async with Simulator("crun", latency=FAST, api_key=canary) as sim:
            async with nb.Client(
                "crun", api_key=canary, base_url=sim.base_url, journal=db
            ) as first:
                paid = await (await first.submit(request))
            # What the journal held when the client kept the URL as given.
            with sqlite3.connect(db) as raw:
                raw.execute(
                    "UPDATE meta SET value = ? WHERE name = 'base_url'",
                    (_with_password(sim.base_url),),
                )
            raw.close()
            assert _files_holding_it(tmp_path) == [db]  # the test starts from the leak
            async with nb.Client(
                "crun", api_key=canary, base_url=sim.base_url, journal=db
            ) as again:
                rerun = await (await again.submit(request))
                texts = [repr(again), str(again), again.base_url]
                # While the journal is still open: not left for SQLite's checkpoint at close.
                assert _files_holding_it(tmp_path) == []
            assert rerun.task_id == paid.task_id
            assert sim.stats.creates == 1
            elsewhere = sim.base_url.replace("127.0.0.1", "localhost")
            with pytest.raises(nb.ConfigurationError, match="belongs to crun at http") as other:
                async with nb.Client("crun", api_key=canary, base_url=elsewhere, journal=db) as c:
                    await c.submit(request)
    assert sim.base_url in str(other.value)
    texts += _texts(other.value)
    texts += [record.getMessage() for record in caplog.records]
    assert all(PASSWORD not in text and canary not in text for text in texts)
    assert _files_holding_it(tmp_path) == []


def test_f20_cli_refuses_a_password_in_a_url_without_printing_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    canary: str,
) -> None:
    """--base-url and an accounts file's base_url holding a password: exit 2 saying so, the
    password in no output line and no file, nothing sent."""
    sim = Simulator("crun", latency=FAST, api_key=canary).start_in_thread()
    try:
        for name in ("NANOBANANA_BASE_URL", "NANOBANANA_PROVIDER", "NANOBANANA_COORDINATOR"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("NANOBANANA_API_KEY", canary)
        prompts = tmp_path / "p.txt"
        prompts.write_text("a cat\n")
        url = _with_password(sim.base_url)
        batch = ["batch", str(prompts), "--out", str(tmp_path / "out")]
        assert main([*batch, "--provider", "crun", "--base-url", url]) == 2
        flag = capsys.readouterr()
        accounts = tmp_path / "accounts.toml"
        accounts.write_text(f'[[accounts]]\nprovider = "crun"\nbase_url = "{url}"\n')
        assert main([*batch, "--accounts", str(accounts)]) == 2
        listed = capsys.readouterr()
        assert sim.stats.total_requests == 0
    finally:
        sim.stop_thread()
    assert "user name or password" in flag.err
    assert "accounts[0].base_url: must not hold a user name or password" in listed.err
    for text in (flag.out, flag.err, listed.out, listed.err):
        assert PASSWORD not in text
        assert canary not in text
    assert _files_holding_it(tmp_path) == [accounts]  # the user's own file, nothing else


def test_the_api_key_in_base_url_is_refused_and_never_shown(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    canary: str,
) -> None:
    """The key in base_url's path or query (plain or percent-encoded): a ConfigurationError
    naming the header it belongs in, before anything is sent or written; at the command line
    exit 2 and one line, the key in no output (the CLI printed "apixo at <url>" with it, and
    the client's repr showed it). A URL that merely shares a short key's letters is kept."""
    sim = Simulator("apixo", latency=FAST, api_key=canary).start_in_thread()
    try:
        encoded = "".join(f"%{ord(c):02X}" for c in canary)
        for url in (
            f"{sim.base_url}?key={canary}",
            sim.base_url.replace("/api/v1", f"/{canary}/api/v1"),
            f"{sim.base_url}?key={encoded}",
        ):
            with pytest.raises(nb.ConfigurationError, match="must not hold the API key") as got:
                nb.Client("apixo", api_key=canary, base_url=url, journal=tmp_path / "j.db")
            assert all(canary not in text and encoded not in text for text in _texts(got.value))
        short = nb.Client("apixo", api_key="api", base_url=sim.base_url)  # /api/v1 is no key
        assert repr(short).endswith("/api/v1')")
        for name in ("NANOBANANA_BASE_URL", "NANOBANANA_PROVIDER", "NANOBANANA_COORDINATOR"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("NANOBANANA_API_KEY", canary)
        argv = ["generate", "a cat", "-o", str(tmp_path / "c.png"), "--provider", "apixo"]
        assert main([*argv, "--base-url", f"{sim.base_url}?key={canary}"]) == 2
        shown = capsys.readouterr()
        assert sim.stats.total_requests == 0
    finally:
        sim.stop_thread()
    assert shown.out == ""
    assert shown.err.splitlines() == [
        "error: base_url must not hold the API key for apixo: it goes in the Authorization header"
    ]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("cut", ["/", "?", "#"])
def test_f20_a_password_cut_by_a_slash_in_base_url_is_refused_unechoed(
    tmp_path: Path, cut: str
) -> None:
    """A password with an unencoded "/", "?" or "#" ends the URL's authority there, so no
    user part is seen ("user" reads as the host, the password's start as its port): the URL
    is still refused before anything is written, without echoing it; it was kept, and
    stored in the journal as given."""
    secret = f"pw{cut}{PASSWORD}"
    with pytest.raises(nb.ConfigurationError) as given:
        nb.Client(
            "apixo",
            api_key="k",
            base_url=f"https://user:{secret}@api.example.com/v1",
            journal=tmp_path / "j.db",
        )
    assert not any(PASSWORD in text for text in _texts(given.value))
    assert _files_holding_it(tmp_path) == []


def test_f20_an_accounts_file_url_without_scheme_is_refused_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An accounts file's base_url with a password and no scheme ("user:pw@host") is not an
    http(s) URL: said so, without echoing the password (it was printed as given)."""
    for name in ("NANOBANANA_BASE_URL", "NANOBANANA_PROVIDER", "NANOBANANA_COORDINATOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NANOBANANA_API_KEY", "k")
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    accounts = tmp_path / "accounts.toml"
    accounts.write_text(
        f'[[accounts]]\nprovider = "crun"\nbase_url = "user:{PASSWORD}@api.example.com"\n'
    )
    batch = ["batch", str(prompts), "--out", str(tmp_path / "out"), "--accounts", str(accounts)]
    assert main(batch) == 2
    said = capsys.readouterr()
    assert "accounts[0].base_url:" in said.err
    assert "not an http(s) URL" in said.err
    assert PASSWORD not in said.err + said.out


async def test_f20_a_password_in_a_receivers_public_url_is_refused_unechoed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """CallbackReceiver(public_url="https://user:pw@host/cb"), the public_url setter and
    start(public_url=...) are a ConfigurationError, the password in no message; the URL would
    have gone to the provider with every create and shown in the receiver's repr. A receiver
    refused at start() is not left started."""
    caught: list[BaseException] = []
    url = _with_password("https://hooks.example.com/cb")
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(nb.ConfigurationError, match="user name or password") as given:
            nb.CallbackReceiver(public_url=url)
        caught.append(given.value)
        receiver = nb.CallbackReceiver(public_url="https://hooks.example.com/cb")
        with pytest.raises(nb.ConfigurationError, match="user name or password") as set_:
            receiver.public_url = url
        caught.append(set_.value)
        assert receiver.public_url == "https://hooks.example.com/cb"
        with pytest.raises(nb.ConfigurationError, match="user name or password") as started:
            await receiver.start("127.0.0.1", 0, public_url=url)
        caught.append(started.value)
        await receiver.start("127.0.0.1", 0)  # not half started by the refusal
        await receiver.aclose()
    texts = [text for error in caught for text in _texts(error)]
    texts += [record.getMessage() for record in caplog.records] + [repr(receiver)]
    assert all(PASSWORD not in text for text in texts)


async def test_f20_a_password_in_a_callback_url_is_refused_before_anything_is_sent(
    caplog: pytest.LogCaptureFixture, canary: str
) -> None:
    """generate(callback_url="https://user:pw@host/cb") and an ImageRequest holding one are an
    InvalidRequestError naming $.callback_url (so is a password whose "/" hides it): nothing
    reaches the provider (whose task logs and answers would hold it), and the password is in
    no message."""
    caught: list[BaseException] = []
    url = _with_password("https://hooks.example.com/cb")
    with caplog.at_level(logging.DEBUG):
        async with (
            Simulator("apixo", latency=FAST, api_key=canary) as sim,
            nb.Client("apixo", api_key=canary, base_url=sim.base_url) as client,
        ):
            with pytest.raises(nb.InvalidRequestError, match="password") as generated:
                await client.generate("a cat", callback_url=url)
            assert generated.value.errors == (
                "callback URL must not hold a user name or password @ $.callback_url",
            )
            caught.append(generated.value)
            with pytest.raises(nb.InvalidRequestError, match="password") as made:
                nb.ImageRequest(prompt="a cat", callback_url=url)
            caught.append(made.value)
            with pytest.raises(nb.InvalidRequestError, match="host part") as unparsed:
                # A password's "/" ends the authority early: its start reads as the port.
                await client.generate("a cat", callback_url="https://user:pa/ss@hooks.example")
            caught.append(unparsed.value)
            assert sim.stats.total_requests == 0
    texts = [text for error in caught for text in _texts(error)]
    texts += [record.getMessage() for record in caplog.records]
    assert all(PASSWORD not in text and canary not in text for text in texts)
