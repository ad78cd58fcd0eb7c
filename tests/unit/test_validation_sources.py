"""Refuse only what the docs forbid (issue 11, item 6): a cap with no source is not checked."""

from __future__ import annotations

import pytest

import nanobanana_async as nb
from nanobanana_async.providers import DRIVERS, validate

HOOK = "https://hooks.test/cb"


def test_crun_classic_has_no_unsourced_caps() -> None:
    """crun's classic model had 5 images / 5,000 characters from no document: crun decides."""
    request = nb.ImageRequest(
        prompt="x" * 6_000,
        model="nano-banana",
        image_urls=tuple(f"https://img.test/{i}.png" for i in range(6)),
    )
    spec = validate(DRIVERS["crun"], request)
    assert (spec.max_images, spec.max_prompt) == (None, None)


def urls(n: int) -> tuple[str, ...]:
    return tuple(f"https://img.test/{i}.png" for i in range(n))


@pytest.mark.parametrize(
    ("provider", "fields"),
    [
        # xingchao's own create example sends nano-banana-2 at 2k, against its resolution table.
        ("xingchao", {"model": "nano-banana-2", "resolution": "2K"}),
        # crun's -v2 channels other than google/nano-banana-v2: the 1K note is that one's.
        ("crun", {"model": "google/nano-banana-2-v2", "resolution": "4K"}),
        # crun lite and -v2 refusing Google Search is clients' knowledge only.
        ("crun", {"model": "google/nano-banana-2-lite", "google_search": True}),
        # crun's lite cap (10) comes from clients only.
        ("crun", {"model": "google/nano-banana-2-lite", "image_urls": urls(12)}),
        # crun pro: nanobananaapi's pro page (8 images, classic ratios) and crun's clients
        # (14, extreme ratios) disagree.
        ("crun", {"model": "nano-banana-pro", "image_urls": urls(12), "aspect_ratio": "1:8"}),
        # crun pro inherited NB2's 20,000-character cap; no document states one for pro.
        ("crun", {"model": "nano-banana-pro", "prompt": "x" * 25_000}),
        ("crun", {"model": "google/nano-banana-pro-v2", "prompt": "x" * 25_000}),
        # nanobananaapi's generate page states no image cap; pro states no prompt cap.
        ("nanobananaapi", {"model": "nano-banana", "image_urls": urls(6), "callback_url": HOOK}),
        (
            "nanobananaapi",
            {"model": "nano-banana-pro", "prompt": "x" * 25_000, "callback_url": HOOK},
        ),
    ],
)
def test_what_no_document_forbids_is_not_refused(provider: str, fields: dict[str, object]) -> None:
    """A rule with no source, or whose sources disagree, is not checked: the provider decides."""
    request = nb.ImageRequest(**{"prompt": "a cat", **fields})  # type: ignore[arg-type]
    validate(DRIVERS[provider], request)
