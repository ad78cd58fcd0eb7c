"""Untyped rows into requests through cattrs, and its errors into ours."""

from __future__ import annotations

import pytest

import nanobanana_async as nb
from nanobanana_async._structure import structure_request


def _errors(data: object, *, cells: bool = False) -> list[str]:
    with pytest.raises(nb.InvalidRequestError) as info:
        structure_request(data, cells=cells)  # type: ignore[arg-type]  # what a file may hold
    return list(info.value.errors)


def test_csv_cells_are_read_into_their_fields_types() -> None:
    """Text cells become counts, seconds, flags, URL lists and option maps."""
    request = structure_request(
        {
            "prompt": " a cat ",
            "num_images": "3",
            "timeout": "2.5",
            "google_search": "Yes",
            "image_urls": "https://x.test/a.png; https://x.test/b.png",
            "provider_options": "provider=official",
        },
        cells=True,
    )
    assert request.prompt == "a cat"
    assert (request.num_images, request.timeout, request.google_search) == (3, 2.5, True)
    assert request.image_urls == ("https://x.test/a.png", "https://x.test/b.png")
    assert request.provider_options == {"provider": "official"}


def test_a_cell_that_does_not_parse_reads_as_the_same_value_in_json() -> None:
    """`num_images` `two` in a CSV is refused with the words a JSON `"two"` gets."""
    bad = {"prompt": "a cat", "num_images": "two", "google_search": "maybe", "timeout": "soon"}
    assert (
        _errors(bad, cells=True)
        == _errors(bad)
        == [
            "google_search must be a bool or None @ $.google_search",
            "timeout must be a positive number of seconds @ $.timeout",
            "num_images must be a positive integer @ $.num_images",
        ]
    )


def test_json_values_are_not_coerced() -> None:
    """A JSON row's `"3"` is not a count, and `"false"` is not True (bool("false") is)."""
    assert _errors({"prompt": "a cat", "num_images": "3", "google_search": "false"}) == [
        "google_search must be a bool or None @ $.google_search",
        "num_images must be a positive integer @ $.num_images",
    ]


def test_unknown_and_missing_fields_are_named_by_path() -> None:
    """cattrs' missing and extra keys become our `problem @ $.field` messages."""
    assert _errors({"aspect_ratio": "1:1"}) == ["required field missing @ $.prompt"]
    (unknown,) = _errors({"prompt": "a cat", "colour": "red"})
    assert unknown.startswith("unknown field (known: aspect_ratio, callback_url, ")
    assert unknown.endswith(" @ $.colour")


def test_an_unknown_key_and_bad_values_are_all_reported_at_once() -> None:
    """A misspelt key does not hide the row's other problems (issue 20, item 10: every
    problem at once), through ``from_mapping`` as through a file's rows."""
    with pytest.raises(nb.InvalidRequestError) as info:
        nb.ImageRequest.from_mapping({"prompt": "", "colour": "red", "num_images": 0})
    unknown, *values = info.value.errors
    assert unknown.startswith("unknown field (known: aspect_ratio, ")
    assert unknown.endswith(" @ $.colour")
    assert values == [
        "prompt must be a non-empty string @ $.prompt",
        "num_images must be a positive integer @ $.num_images",
    ]
    assert _errors({"colour": "red"}, cells=True)[1:] == ["required field missing @ $.prompt"]


def test_from_mapping_is_the_same_path() -> None:
    """`ImageRequest.from_mapping` gives the library's callers the same typed errors."""
    with pytest.raises(nb.InvalidRequestError) as info:
        nb.ImageRequest.from_mapping({"aspect_ratio": "1:1"})
    assert info.value.errors == ("required field missing @ $.prompt",)
    assert nb.ImageRequest.from_mapping({"prompt": "a cat", "num_images": 2}).num_images == 2
