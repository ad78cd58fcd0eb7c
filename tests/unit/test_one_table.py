"""The simulator and the drivers follow one table of per-model rules (issue 20, item 15).

For every provider and model id, requests at and past each rule of the drivers' table are
validated by the driver and sent, as the driver builds them, to the simulator's validation:
both accept what the table allows and both refuse what it forbids. Where the table has no rule
("not checked": no document states one), both accept.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import attrs
import pytest

import nanobanana_async as nb
from nanobanana_async.providers import DRIVERS, ModelSpec, validate
from nanobanana_async.providers._base import RATIOS_NB2
from nanobanana_async.testing._wire import PROTOCOLS, RejectError

HOOK = "https://hooks.test/cb"
UNCAPPED = 40  # images, when the table states no cap
LONG = 30_000  # prompt characters, when the table states no cap


def _models() -> Iterator[tuple[str, str, ModelSpec]]:
    for provider, driver in DRIVERS.items():
        seen = set()
        for spec in driver.models.values():
            if spec.wire_id not in seen:
                seen.add(spec.wire_id)
                yield provider, spec.wire_id, spec


def _model_for(provider: str, wire_id: str) -> str:
    """The name a request uses for ``wire_id`` (nanobananaapi knows only canonical names)."""
    return next(m for m, s in DRIVERS[provider].models.items() if s.wire_id == wire_id)


def _sim_accepts(provider: str, request: nb.ImageRequest) -> bool | None:
    """Whether the simulator's validation accepts the body the driver builds (unchecked);
    None when the driver cannot send what ``request`` asks (it leaves the field out, or has
    no wire value for it): then only validation can refuse it."""
    driver = DRIVERS[provider]
    try:
        http = driver.build_submit(request)
    except KeyError:
        return None
    bare = attrs.evolve(
        request,
        google_search=None,
        resolution=None,
        output_format=None,
    )
    if request != bare and http.json == driver.build_submit(bare).json:
        return None
    protocol = PROTOCOLS[provider]()
    for route in protocol.create_routes:
        pattern = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", route) + "$"
        found = re.match(pattern, http.path)
        if found:
            try:
                protocol.validate(route, found.groupdict(), http.json)
            except RejectError:
                return False
            return True
    raise AssertionError(f"no route of the simulator for {http.path}")


def _driver_accepts(provider: str, request: nb.ImageRequest) -> bool:
    try:
        validate(DRIVERS[provider], request)
    except nb.InvalidRequestError:
        return False
    return True


def _cases(spec: ModelSpec) -> Iterator[tuple[str, dict[str, object], bool]]:
    """(what, request fields, whether the table allows it)."""
    cap = spec.max_prompt
    yield "prompt at its cap", {"prompt": "x" * (cap or LONG)}, True
    if cap is not None:
        yield "prompt past its cap", {"prompt": "x" * (cap + 1)}, False
    most = spec.max_images
    urls = [f"https://img.test/{i}.png" for i in range((most or UNCAPPED) + 1)]
    yield "images at their cap", {"image_urls": tuple(urls[: most or UNCAPPED])}, True
    if most is not None:
        yield "images past their cap", {"image_urls": tuple(urls)}, False
    yield "google search", {"google_search": True}, spec.google_search
    for ratio in sorted(RATIOS_NB2 | {"7:3"}):
        allowed = spec.aspect_ratios is None or ratio in spec.aspect_ratios
        yield f"aspect ratio {ratio}", {"aspect_ratio": ratio}, allowed
    for resolution in ("1K", "2K", "4K"):
        yield f"resolution {resolution}", {"resolution": resolution}, resolution in spec.resolutions
    for fmt in ("png", "jpeg"):
        yield f"format {fmt}", {"output_format": fmt}, fmt in spec.output_formats
    yield "nothing optional", {}, True


@pytest.mark.parametrize(
    ("provider", "wire_id", "spec"),
    list(_models()),
    ids=[f"{p}:{w}" for p, w, _ in _models()],
)
def test_the_simulator_refuses_what_validation_refuses_and_nothing_else(
    provider: str, wire_id: str, spec: ModelSpec
) -> None:
    """Each rule of the table: the driver and the simulator agree, case by case."""
    disagreements = []
    for what, fields, allowed in _cases(spec):
        base: dict[str, object] = {"prompt": "a cat", "model": _model_for(provider, wire_id)}
        if spec.callback_required:
            base["callback_url"] = HOOK
        request = nb.ImageRequest(**{**base, **fields})  # type: ignore[arg-type]
        driver, simulator = _driver_accepts(provider, request), _sim_accepts(provider, request)
        # None: the body is the one without the field (checked as "nothing optional").
        if driver != allowed or simulator is (not allowed):
            disagreements.append(f"{what}: table {allowed}, driver {driver}, sim {simulator}")
    assert disagreements == []


# The cases issue 20 named, each against its document's words.
@pytest.mark.parametrize(
    ("provider", "fields"),
    [
        # crun: seed 002 states only "output_format is not supported" and "fixed to 1K" for
        # the -v2 channels; no crun document refuses google_search on -2-v2 or -2-lite.
        ("crun", {"model": "google/nano-banana-2-v2", "google_search": True}),
        ("crun", {"model": "google/nano-banana-2-lite", "google_search": True}),
        # crun classic: no crun document caps it (apixo's 5 / 5,000 are apixo's).
        ("crun", {"model": "nano-banana", "prompt": "x" * 6_000}),
        (
            "crun",
            {"model": "nano-banana", "image_urls": tuple(f"https://i.test/{i}" for i in range(6))},
        ),
        # crun lite: "NB2-lite <= 10" is [3P] only (PROTOCOLS.md 2).
        (
            "crun",
            {
                "model": "google/nano-banana-2-lite",
                "image_urls": tuple(f"https://i.test/{i}" for i in range(12)),
            },
        ),
        # nanobananaapi pro: its page states no prompt cap (PROTOCOLS.md 3, generate-pro).
        (
            "nanobananaapi",
            {"model": "nano-banana-pro", "prompt": "x" * 25_000, "callback_url": HOOK},
        ),
    ],
)
def test_what_no_document_states_neither_side_enforces(
    provider: str, fields: dict[str, object]
) -> None:
    """The issue's cases: accepted by validation and by the simulator alike."""
    request = nb.ImageRequest(**{"prompt": "a cat", **fields})  # type: ignore[arg-type]
    assert _driver_accepts(provider, request)
    assert _sim_accepts(provider, request)


def test_apixo_nb2_sends_what_was_asked_and_the_documented_required_fields() -> None:
    """apixo nano-banana-2: PROTOCOLS.md 4 marks aspect_ratio and resolution "required"; what
    the caller asked is sent as asked, and only a field left out gets the table's value (its
    source cited in the driver's table); the simulator refuses a body without them."""
    driver = DRIVERS["apixo"]
    asked = driver.build_submit(
        nb.ImageRequest(prompt="a cat", aspect_ratio="16:9", resolution="4K")
    )
    assert asked.json["input"]["aspect_ratio"] == "16:9"  # type: ignore[index]
    assert asked.json["input"]["resolution"] == "4k"  # type: ignore[index]
    unasked = driver.build_submit(nb.ImageRequest(prompt="a cat"))
    spec = driver.models["nano-banana-2"]
    assert unasked.json["input"]["aspect_ratio"] == spec.required["aspect_ratio"]  # type: ignore[index]
    assert unasked.json["input"]["resolution"] == spec.required["resolution"].lower()  # type: ignore[index]
    protocol = PROTOCOLS["apixo"]()
    bare = {"input": {"mode": "text-to-image", "prompt": "a cat"}}
    with pytest.raises(RejectError, match="aspect_ratio"):
        protocol.validate("/generateTask/{model}", {"model": "nano-banana-2"}, bare)
