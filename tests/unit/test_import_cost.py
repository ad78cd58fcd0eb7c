"""What a batch worker's start imports: every module is CPU that several workers started at once
on a busy machine pay together before their first request (benchmarks/startup.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# A fresh interpreter: this one's modules were loaded by other tests.
_WORKER_START = """
import sys
from nanobanana_async.cli import _main
from nanobanana_async import Client
Client("apixo", api_key="k", coordinator="redis://127.0.0.1:1/0")
print(" ".join(sorted(sys.modules)))
"""


def test_a_client_without_callbacks_never_loads_the_callback_receiver() -> None:
    """The command line and a coordinated Client load neither the receiver nor aiohttp.web."""
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", _WORKER_START], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert "nanobanana_async._client" in loaded  # the start was really made
    assert {"aiohttp.web", "nanobanana_async.webhooks._receiver"}.isdisjoint(loaded)


def test_the_callback_names_load_when_first_used() -> None:
    """``nanobanana_async.webhooks`` still hands out the receiver; an unknown name is refused."""
    from nanobanana_async import CallbackReceiver, webhooks
    from nanobanana_async.webhooks import CallbackStatistics
    from nanobanana_async.webhooks._receiver import CallbackReceiver as Receiver

    assert CallbackReceiver is Receiver is webhooks.CallbackReceiver
    assert CallbackStatistics.__name__ == "CallbackStatistics"
    with pytest.raises(AttributeError, match="no attribute 'Receiver'"):
        _ = webhooks.Receiver  # type: ignore[attr-defined]  # the missing name is the point
