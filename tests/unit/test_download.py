"""Downloads: a stale file is replaced, names are safe, disk errors are typed."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import io
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import nanobanana_async as nb
from nanobanana_async._download import Downloader, safe_name

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200_000  # several chunks: the body is streamed


@pytest.fixture
async def image_url() -> AsyncIterator[str]:
    async def image(_: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    app = web.Application()
    app.router.add_get("/a.png", image)
    async with TestServer(app, host="127.0.0.1", port=0) as server:
        yield str(server.make_url("/a.png"))


def _result(url: str, task_id: str = "task-1") -> nb.ImageResult:
    now = dt.datetime.now(dt.UTC)
    return nb.ImageResult(
        task_id=task_id,
        provider="apixo",
        model="nano-banana-2",
        urls=(url,),
        request=None,
        submitted_at=now,
        completed_at=now,
    )


async def test_a_file_that_is_not_an_image_is_replaced(tmp_path: Path, image_url: str) -> None:
    """A text file where the image goes is not 'already downloaded': it is replaced."""
    dest = tmp_path / "existing.png"
    dest.write_text("not an image\n")
    downloader = Downloader()
    try:
        assert await downloader.download(_result(image_url), dest) == [dest]
    finally:
        await downloader.aclose()
    assert dest.read_bytes() == PNG
    assert [p.name for p in tmp_path.iterdir()] == ["existing.png"]


async def test_a_folder_in_the_way_is_a_storage_error(tmp_path: Path, image_url: str) -> None:
    """A folder (or any unwritable path) raises StorageError with the task id; no temp left."""
    dest = tmp_path / "taken.png"  # named exactly: a folder of that name is in the way
    dest.mkdir()
    downloader = Downloader()
    try:
        with pytest.raises(nb.StorageError) as info:
            await downloader.download(_result(image_url), dest)
    finally:
        await downloader.aclose()
    assert info.value.task_id == "task-1"
    assert info.value.path == str(dest)
    assert [p.name for p in tmp_path.iterdir()] == ["taken.png"]


async def test_an_unwritable_folder_is_a_storage_error(tmp_path: Path, image_url: str) -> None:
    """Permission denied (like a full disk) is typed, not a raw OSError."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    downloader = Downloader()
    try:
        with pytest.raises(nb.StorageError, match="cannot write"):
            await downloader.download(_result(image_url), blocker / "sub" / "a.png")
    finally:
        await downloader.aclose()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("abc-123_X.y", "abc-123_X.y"),
        ("../../etc/passwd", "etc_passwd"),
        ("a/../b", "a_.._b"),
        ("..", "_"),
        ("", "_"),
        ("x" * 200, "x" * 80),
    ],
)
def test_safe_name_keeps_untrusted_ids_inside_the_folder(raw: str, expected: str) -> None:
    """Task ids come from the provider: no separator or leading dot survives."""
    assert safe_name(raw) == expected
    assert "/" not in safe_name(raw)
    assert not safe_name(raw).startswith(".")


class SkippingClock:
    """A clock whose sleeps return at once, moving time to their deadline and noting them."""

    def __init__(self) -> None:
        self.time = 0.0
        self.waits: list[float] = []

    def now(self) -> float:
        return self.time

    async def sleep_until(self, deadline: float) -> None:
        self.waits.append(deadline - self.time)
        self.time = max(self.time, deadline)


async def test_retries_back_off_on_the_clients_clock_with_its_policy(tmp_path: Path) -> None:
    """A failing image host is tried ``RetryPolicy.attempts`` times in all, the waits jittered
    by the policy and slept on the injected clock (no real sleep); the last error is raised."""
    hits = 0

    async def flaky(_: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        return web.Response(status=503)

    app = web.Application()
    app.router.add_get("/a.png", flaky)
    policy = nb.RetryPolicy(attempts=4, base_delay=10.0, max_delay=100.0)
    clock = SkippingClock()
    downloader = Downloader(retry=policy, clock=clock, random=lambda: 0.5)
    async with TestServer(app, host="127.0.0.1", port=0) as server:
        try:
            with pytest.raises(nb.BadResponseError, match="HTTP 503"):
                await downloader.download(
                    _result(str(server.make_url("/a.png"))), tmp_path / "a.png"
                )
        finally:
            await downloader.aclose()
    assert hits == 4
    assert clock.waits == [5.0, 10.0, 20.0]  # 0.5 x 10 s x 2**attempt


async def test_a_cancelled_download_leaves_no_temporary_file(
    tmp_path: Path, image_url: str
) -> None:
    """Ctrl-C at any point of a download leaves no hidden .part file and no open handle."""
    downloader = Downloader()
    try:
        for steps in range(60):
            job = asyncio.ensure_future(downloader.download(_result(image_url), tmp_path / "a.png"))
            for _ in range(steps):
                await asyncio.sleep(0)
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job
            (tmp_path / "a.png").unlink(missing_ok=True)
    finally:
        await downloader.aclose()
    await asyncio.sleep(0.1)  # worker threads of cancelled awaits run to their end
    gc.collect()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x01" * 5_000
WEBP = b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x02" * 5_000


@pytest.fixture
async def typed_url() -> AsyncIterator[str]:
    bodies = {"png": PNG, "jpeg": JPEG, "webp": WEBP}

    async def image(request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        return web.Response(body=bodies[kind], content_type=f"image/{kind}")

    app = web.Application()
    app.router.add_get("/{kind}", image)
    async with TestServer(app, host="127.0.0.1", port=0) as server:
        yield str(server.make_url("/"))


@pytest.mark.parametrize(
    ("kind", "body", "suffix"),
    [("png", PNG, ".png"), ("jpeg", JPEG, ".jpg"), ("webp", WEBP, ".webp")],
)
async def test_a_dest_without_an_image_suffix_is_named_by_the_bytes(
    tmp_path: Path, typed_url: str, kind: str, body: bytes, suffix: str
) -> None:
    """``out/cat`` becomes ``out/cat.jpg`` for JPEG bytes: never a JPEG named ``.png``."""
    downloader = Downloader()
    try:
        paths = await downloader.download(_result(typed_url + kind), tmp_path / "cat")
    finally:
        await downloader.aclose()
    assert paths == [tmp_path / f"cat{suffix}"]
    assert paths[0].read_bytes() == body
    assert [p.name for p in tmp_path.iterdir()] == [f"cat{suffix}"]


async def test_a_dest_that_is_a_folder_gets_the_image_inside_named_by_the_task(
    tmp_path: Path, image_url: str
) -> None:
    """``download(result, "images")`` with ``images/`` existing writes ``images/<task id>.png``
    (it wrote ``images.png`` beside the folder); the task id is made file-name safe."""
    folder = tmp_path / "images"
    folder.mkdir()
    downloader = Downloader()
    try:
        paths = await downloader.download(_result(image_url, task_id="../t-1"), folder)
    finally:
        await downloader.aclose()
    assert paths == [folder / "t-1.png"]
    assert paths[0].read_bytes() == PNG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]


async def test_a_dest_with_an_image_suffix_is_kept_and_a_mismatch_logged(
    tmp_path: Path, typed_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The caller named the file: JPEG bytes asked into ``x.png`` go exactly there, with a
    WARNING naming the real type; a matching ``.jpeg`` name is no mismatch."""
    downloader = Downloader()
    try:
        with caplog.at_level("WARNING", logger="nanobanana_async"):
            paths = await downloader.download(_result(typed_url + "jpeg"), tmp_path / "x.png")
            same = await downloader.download(_result(typed_url + "jpeg"), tmp_path / "y.jpeg")
    finally:
        await downloader.aclose()
    assert paths == [tmp_path / "x.png"]
    assert paths[0].read_bytes() == JPEG
    assert same == [tmp_path / "y.jpeg"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "x.png holds JPEG bytes" in warnings[0]


async def test_several_images_without_a_suffix_are_numbered_then_typed(
    tmp_path: Path, typed_url: str
) -> None:
    """Two images into ``out/cat``: ``cat-1.png`` and ``cat-2.jpg``, each by its own bytes."""
    now = dt.datetime.now(dt.UTC)
    result = nb.ImageResult(
        task_id="task-2",
        provider="apixo",
        model="nano-banana-2",
        urls=(typed_url + "png", typed_url + "jpeg"),
        request=None,
        submitted_at=now,
        completed_at=now,
    )
    downloader = Downloader()
    try:
        paths = await downloader.download(result, tmp_path / "cat")
    finally:
        await downloader.aclose()
    assert paths == [tmp_path / "cat-1.png", tmp_path / "cat-2.jpg"]


async def test_a_full_disk_is_a_storage_error_even_when_closing_fails_too(
    tmp_path: Path, image_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC on a write, and again when the file is closed (the flush): StorageError with
    the task id, not the raw OSError the close raised over it; no temporary file left."""
    from nanobanana_async import _download

    class Full(io.BytesIO):
        def write(self, data: object) -> int:
            raise OSError(28, "No space left on device")

        def close(self) -> None:
            super().close()
            raise OSError(28, "No space left on device")

    def open_full(path: Path) -> tuple[Path, io.BytesIO]:
        tmp = path.with_name(f".{path.name}.part")
        tmp.write_bytes(b"")
        return tmp, Full()

    monkeypatch.setattr(_download, "_open_temporary", open_full)
    downloader = Downloader()
    try:
        with pytest.raises(nb.StorageError, match="No space left on device") as info:
            await downloader.download(_result(image_url), tmp_path / "a.png")
    finally:
        await downloader.aclose()
    assert info.value.task_id == "task-1"
    assert list(tmp_path.iterdir()) == []


async def test_closing_the_client_mid_download_is_client_closed_error(tmp_path: Path) -> None:
    """The client is closed while an image is still arriving from a slow host: the download
    raises ClientClosedError naming the task (not a raw AssertionError), and leaves no file."""
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.content_length = len(PNG)
        await response.prepare(request)
        await response.write(PNG[:1000])
        started.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), 10)
        return response

    app = web.Application()
    app.router.add_get("/a.png", slow)
    async with TestServer(app, host="127.0.0.1", port=0) as server:
        client = nb.Client("apixo", api_key="k-canary-download", base_url=str(server.make_url("")))
        job = asyncio.ensure_future(
            client.download(_result(str(server.make_url("/a.png"))), tmp_path / "a.png")
        )
        await asyncio.wait_for(started.wait(), 10)
        await asyncio.sleep(0.05)  # the first bytes are being read
        await client.aclose()
        try:
            with pytest.raises(nb.ClientClosedError) as info:
                await asyncio.wait_for(job, 10)
        finally:
            release.set()
    assert info.value.task_id == "task-1"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


async def test_each_download_is_a_debug_line_without_its_query(
    tmp_path: Path, image_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """With DEBUG on (NANOBANANA_LOG=debug), each image download is a line as each status
    check is: provider, task id, HTTP status, size and where from; the URL's query (a signed
    URL's token) is never shown."""
    downloader = Downloader()
    try:
        with caplog.at_level(logging.DEBUG, logger="nanobanana_async"):
            await downloader.download(_result(image_url + "?token=sig-canary"), tmp_path / "a.png")
    finally:
        await downloader.aclose()
    lines = [r.getMessage() for r in caplog.records if "image download" in r.getMessage()]
    assert lines == [
        f"apixo task task-1: image download HTTP 200, {len(PNG)} bytes from {image_url}"
    ]
    assert "sig-canary" not in caplog.text
