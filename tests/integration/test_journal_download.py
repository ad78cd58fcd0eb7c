"""The journal (re-attach, never pay twice) and downloads (atomic, typed failures)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import nanobanana_async as nb
from nanobanana_async._journal import Journal
from nanobanana_async.testing import Faults, Latency, Simulator
from nanobanana_async.testing._png import render

FAST = Latency(median=0.2, sigma=0.2)


async def test_same_request_twice_is_one_task(tmp_path: Path) -> None:
    """With a journal, submitting a known request re-attaches instead of paying again."""
    db = tmp_path / "run.db"
    async with Simulator("apixo", latency=FAST) as sim:
        async with nb.Client(
            "apixo", api_key=sim.api_key, base_url=sim.base_url, journal=db
        ) as client:
            first = await client.generate("a cat")
        async with nb.Client(
            "apixo", api_key=sim.api_key, base_url=sim.base_url, journal=db
        ) as client:
            again = await (await client.submit(nb.ImageRequest(prompt="a cat")))
            other = await (await client.submit(nb.ImageRequest(prompt="a cat"), key="line-2"))
    assert again.task_id == first.task_id
    assert again.urls == first.urls
    assert other.task_id != first.task_id
    assert sim.stats.creates == 2


async def test_identical_requests_at_once_share_one_task(tmp_path: Path) -> None:
    """With a journal, identical requests submitted at once are one create, and every caller
    gets its result (not a raw sqlite3.IntegrityError)."""
    async with (
        Simulator("apixo", latency=FAST) as sim,
        nb.Client(
            "apixo", api_key=sim.api_key, base_url=sim.base_url, journal=tmp_path / "run.db"
        ) as client,
    ):
        results = await asyncio.gather(*(client.generate("a cat") for _ in range(3)))
        keyed = await asyncio.gather(
            *(client.submit(nb.ImageRequest(prompt="a dog"), key="line-7") for _ in range(2))
        )
        dog = await keyed[1]
    assert len({r.task_id for r in results}) == 1
    assert keyed[0] is keyed[1]
    assert dog.task_id == keyed[0].id
    assert sim.stats.creates == 2


async def test_a_joined_submit_goes_on_when_the_first_caller_gives_up(tmp_path: Path) -> None:
    """The first of two identical submits is cancelled while waiting for a slot: the other
    caller submits the request itself, once."""
    async with (
        Simulator("apixo", latency=FAST) as sim,
        nb.Client(
            "apixo",
            api_key=sim.api_key,
            base_url=sim.base_url,
            journal=tmp_path / "run.db",
            limits=nb.Limits(concurrent_tasks=1),
        ) as client,
    ):
        busy = await client.submit(nb.ImageRequest(prompt="a cat"))
        first = asyncio.ensure_future(client.submit(nb.ImageRequest(prompt="a dog")))
        second = asyncio.ensure_future(client.submit(nb.ImageRequest(prompt="a dog")))
        await asyncio.sleep(0.05)
        first.cancel()
        await busy
        dog = await (await second)
    assert first.cancelled()
    assert dog.request is not None
    assert sim.stats.creates == 2


async def test_killed_after_accept_resumes_the_task(tmp_path: Path) -> None:
    """A task id in the journal with no end is resumed by polling, not resubmitted."""
    db = tmp_path / "run.db"
    async with Simulator("crun", latency=Latency(median=0.5)) as sim:
        async with nb.Client(
            "crun", api_key=sim.api_key, base_url=sim.base_url, journal=db
        ) as client:
            task = await client.submit(nb.ImageRequest(prompt="a cat"), key="k1")
        # The first client closed before the task ended (as if killed after the accept).
        with pytest.raises(nb.ClientClosedError):
            await task
        async with nb.Client(
            "crun", api_key=sim.api_key, base_url=sim.base_url, journal=db
        ) as client:
            result = await (await client.submit(nb.ImageRequest(prompt="a cat"), key="k1"))
    assert result.task_id == task.id
    assert sim.stats.creates == 1


async def test_outcome_unknown_is_reported_not_resubmitted(tmp_path: Path) -> None:
    """An ambiguous submit leaves an intent; the rerun reports it and sends nothing."""
    db = tmp_path / "run.db"
    faults = Faults(reset_after_create=1.0, kinds=frozenset({"create"}))
    async with Simulator("apixo", latency=FAST, faults=faults) as sim:
        async with nb.Client(
            "apixo", api_key=sim.api_key, base_url=sim.base_url, journal=db
        ) as client:
            with pytest.raises(nb.SubmitOutcomeUnknownError):
                await client.generate("a cat")
        async with nb.Client(
            "apixo", api_key=sim.api_key, base_url=sim.base_url, journal=db
        ) as client:
            with pytest.raises(nb.SubmitOutcomeUnknownError, match="journal"):
                await client.generate("a cat")
    assert sim.stats.requests["create"] == 1
    entries = await _entries(db)
    assert [e.state for e in entries] == ["unknown"]


async def test_refused_submit_can_be_retried(tmp_path: Path) -> None:
    """A submit refused before acceptance leaves no intent: a rerun submits it."""
    db = tmp_path / "run.db"
    async with Simulator("apixo", latency=FAST) as sim:
        async with nb.Client("apixo", api_key="wrong", base_url=sim.base_url, journal=db) as client:
            with pytest.raises(nb.AuthenticationError):
                await client.generate("a cat")
        async with nb.Client(
            "apixo", api_key=sim.api_key, base_url=sim.base_url, journal=db
        ) as client:
            assert (await client.generate("a cat")).urls
    assert sim.stats.creates == 1


async def test_failed_end_is_recorded(tmp_path: Path) -> None:
    """A failed generation is recorded and returned again on a rerun, not regenerated."""
    db = tmp_path / "run.db"
    async with Simulator("apixo", latency=FAST) as sim:
        for _ in range(2):
            async with nb.Client(
                "apixo", api_key=sim.api_key, base_url=sim.base_url, journal=db
            ) as client:
                with pytest.raises(nb.GenerationFailedError):
                    await client.generate("a cat [[fail]]")
    assert sim.stats.creates == 1


async def test_download_over_another_tasks_image_writes_the_new_one(tmp_path: Path) -> None:
    """A valid image already at ``dest`` (another task's) is replaced by this task's image,
    atomically: never kept as "already complete" (the cat, then the dog, is the dog)."""
    async with nb.Client("local") as client:
        cat, dog = await asyncio.gather(
            client.generate("a cat", aspect_ratio="3:2"),
            client.generate("a dog", aspect_ratio="3:2"),
        )
        dest = tmp_path / "out" / "g.png"
        assert await client.download(cat, dest) == [dest]
        assert dest.read_bytes() == render("a cat", "3:2")
        assert await client.download(dog, dest) == [dest]
        assert dest.read_bytes() == render("a dog", "3:2")
    assert [p.name for p in dest.parent.iterdir()] == ["g.png"]  # no temporary file left


async def test_local_task_ids_are_unique_across_processes() -> None:
    """Two ``local`` clients (each starts its own simulator, as two processes do) never hand
    out the same task id: a rerun's ids are not the last run's."""
    ids = []
    for _ in range(2):
        async with nb.Client("local") as client:
            ids.append((await client.submit(nb.ImageRequest(prompt="a cat"))).id)
    assert ids[0] != ids[1]


async def test_a_file_is_kept_only_when_the_journal_says_this_task_wrote_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a journal, downloading a task's image again keeps the file it wrote (no refetch);
    once another task wrote there, or the file changed, it is fetched again."""
    db = tmp_path / "run.db"
    async with (
        Simulator("apixo", latency=FAST) as sim,
        nb.Client("apixo", api_key=sim.api_key, base_url=sim.base_url, journal=db) as client,
    ):
        cat = await client.generate("a cat")
        dog = await client.generate("a dog")
        monkeypatch.chdir(tmp_path)
        dest = Path("g")  # relative, as a batch's --out often is
        assert await client.download(cat, dest) == [Path("g.png")]
        fetched = sim.stats.requests["image"]
        assert await client.download(cat, dest) == [Path("g.png")]
        assert sim.stats.requests["image"] == fetched  # kept: the journal says cat wrote it
        await client.download(dog, dest)
        await client.download(cat, dest)  # dog wrote g.png last: cat's image again
        assert sim.stats.requests["image"] == fetched + 2
        assert (tmp_path / "g.png").read_bytes() == render("a cat", None)
        edited = bytearray(render("a cat", None))
        edited[-20] ^= 0xFF  # changed behind its back, same size
        (tmp_path / "g.png").write_bytes(bytes(edited))
        await client.download(cat, dest)
        assert (tmp_path / "g.png").read_bytes() == render("a cat", None)
        assert sim.stats.requests["image"] == fetched + 3


async def test_f27_expired_result_url(tmp_path: Path) -> None:
    """A result URL that 404s: BadResponseError with the task id; the result keeps its ref."""
    async with (
        Simulator("apixo", latency=FAST, faults=Faults(expire_images=True)) as sim,
        nb.Client("apixo", api_key=sim.api_key, base_url=sim.base_url) as client,
    ):
        result = await client.generate("a cat")
        with pytest.raises(nb.BadResponseError) as info:
            await client.download(result, tmp_path / "cat.png")
    assert info.value.task_id == result.task_id
    assert info.value.status == 404
    assert result.urls
    assert not (tmp_path / "cat.png").exists()
    assert list(tmp_path.iterdir()) == []


async def _entries(db: Path) -> list[object]:
    journal = Journal(db)
    try:
        return list(await journal.entries())
    finally:
        await journal.aclose()
