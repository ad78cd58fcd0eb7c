"""Fault-matrix rows owned by the library's edges: bodies that arrive in pieces (F31)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import nanobanana_async as nb
from nanobanana_async.testing import settle
from tests.chaos import test_fault_matrix_callbacks as callbacks
from tests.chaos.test_fault_matrix_callbacks import Rig

rig = callbacks.rig  # the same 127.0.0.1 receiver rig as F12-F17


async def slowly(data: bytes, pieces: int) -> AsyncIterator[bytes]:
    step = -(-len(data) // pieces)
    for i in range(0, len(data), step):
        yield data[i : i + step]
        await asyncio.sleep(0.05)  # separate TCP writes, 50 ms apart


async def test_f31_callback_in_several_writes_is_accepted(rig: Rig) -> None:
    """F31: a valid callback sent chunked in 4 writes 50 ms apart is read whole."""
    task = await rig.client.submit(nb.ImageRequest(prompt="a cat"))
    body = json.dumps(rig.status_body("t0")).encode()
    async with rig.http.post(rig.urls["t0"], data=slowly(body, 4)) as resp:
        assert resp.status == 200
    await settle()
    stats = rig.receiver.statistics()
    assert (stats.accepted, stats.rejected) == (1, 0)
    await rig.clock.run_until(task.done)
    assert (await task).urls == ("https://img.test/t0.png",)


async def test_f31_slow_chunked_oversize_callback_gets_413(rig: Rig) -> None:
    """A chunked body past the limit that trickles in is refused with 413, never 400."""
    await rig.client.submit(nb.ImageRequest(prompt="a cat"))
    big = b"z" * (1024 * 1024 + 10)
    async with rig.http.post(rig.urls["t0"], data=slowly(big, 3)) as resp:
        assert resp.status == 413
