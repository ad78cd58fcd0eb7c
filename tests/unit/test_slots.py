"""The account's task cap (``_scheduler/_slots.py``): slots held to a horizon are freed by the
slots' own timer, on time, whatever order the holds come in."""

from __future__ import annotations

import asyncio

from nanobanana_async._scheduler._ledger import DEFAULT_HORIZON, Slots
from nanobanana_async.testing import FakeClock


async def test_a_slot_held_after_a_longer_hold_is_freed_at_its_own_horizon(
    clock: FakeClock,
) -> None:
    """A slot held to a near horizon after another was held to the 5-minute default (a lost
    create early on, then an expired task once the model is learned) is freed at its own
    horizon: the timer armed for the later one must not keep it."""
    slots = Slots(2, clock)
    early, late = slots.take("a"), slots.take("b")
    slots.hold_until(early, clock.now() + DEFAULT_HORIZON)
    await clock.advance(1.0)
    slots.hold_until(late, clock.now() + 10.0)
    await clock.advance(9.9)
    assert late.held
    await clock.advance(0.1)
    assert not late.held
    assert early.held
    assert slots.try_acquire("c") is not None  # the freed slot serves the next caller
    await clock.advance(DEFAULT_HORIZON)
    assert not early.held
    await slots.aclose()


async def test_a_waiter_gets_a_slot_when_a_shortened_hold_ends(clock: FakeClock) -> None:
    """A hold moved earlier (the horizon shrinks once latency is learned) frees its slot at the
    new horizon, and the caller waiting for a slot gets it then."""
    slots = Slots(1, clock)
    lease = slots.take("a")
    slots.hold_until(lease, clock.now() + DEFAULT_HORIZON)
    waiter = asyncio.ensure_future(slots.acquire("b"))
    await clock.advance(1.0)
    assert not waiter.done()
    slots.hold_until(lease, clock.now() + 5.0)
    await clock.advance(4.9)
    assert not waiter.done()
    await clock.advance(0.1)
    assert not lease.held
    assert waiter.done()
    assert waiter.result().owner == "b"
    await slots.aclose()


async def test_only_the_latest_hold_frees_a_slot(clock: FakeClock) -> None:
    """A lease held again to a later horizon, or tracked again (``keep``), is not freed at the
    horizon it was first held to."""
    slots = Slots(2, clock)
    moved, kept = slots.take("a"), slots.take("b")
    slots.hold_until(moved, clock.now() + 5.0)
    slots.hold_until(kept, clock.now() + 5.0)
    slots.hold_until(moved, clock.now() + 50.0)
    slots.keep(kept)
    await clock.advance(10.0)
    assert moved.held
    assert kept.held
    await clock.advance(40.0)
    assert not moved.held
    assert kept.held
    await slots.aclose()
