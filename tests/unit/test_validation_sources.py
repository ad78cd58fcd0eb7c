"""Refuse only what the docs forbid (issue 11, item 6): a cap with no source is not checked."""

from __future__ import annotations

import nanobanana_async as nb
from nanobanana_async.providers import DRIVERS, validate


def test_crun_classic_has_no_unsourced_caps() -> None:
    """crun's classic model had 5 images / 5,000 characters from no document: crun decides."""
    request = nb.ImageRequest(
        prompt="x" * 6_000,
        model="nano-banana",
        image_urls=tuple(f"https://img.test/{i}.png" for i in range(6)),
    )
    spec = validate(DRIVERS["crun"], request)
    assert (spec.max_images, spec.max_prompt) == (None, None)
