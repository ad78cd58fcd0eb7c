"""README's "What each provider accepts" table is rendered from the drivers' own tables.

When a driver's table changes, regenerate the README block with
``python -m tests.unit.test_provider_table``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from nanobanana_async.providers import DRIVERS
from nanobanana_async.providers._base import (
    CANONICAL_MODELS,
    RATIOS_CLASSIC,
    RATIOS_CLASSIC_AUTO,
    RATIOS_NB2,
    ModelSpec,
    ProviderDriver,
)

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"<!-- accepts:begin -->\n(.*?)<!-- accepts:end -->", re.S)
UNCHECKED = "not checked"


def _ratios(ratios: frozenset[str] | None) -> str:
    if ratios is None:
        return UNCHECKED
    named = {
        RATIOS_CLASSIC: "classic",
        RATIOS_CLASSIC_AUTO: "classic, auto",
        RATIOS_NB2: "classic, auto, 1:4, 4:1, 1:8, 8:1",
    }
    return named.get(ratios, ", ".join(sorted(ratios)))


def _extras(spec: ModelSpec, options: Mapping[str, frozenset[str]]) -> str:
    extras = [f"`num_images` 1-{spec.num_images}"] if spec.num_images is not None else []
    extras += ["`watermark`"] if spec.watermark else []
    extras += [
        f"`{name}` always sent (`{value}` if not given)" for name, value in spec.required.items()
    ]
    extras += [f"`{name}`: {', '.join(sorted(values))}" for name, values in options.items()]
    return "; ".join(extras) or "—"


def _row(provider: str, model: str, spec: ModelSpec, driver: ProviderDriver, ids: list[str]) -> str:
    named = f"`{model}`" + "".join(f", `{i}`" for i in ids)
    cells = [
        provider,
        named,
        ", ".join(sorted(spec.resolutions)) or "—",
        _ratios(spec.aspect_ratios),
        UNCHECKED if spec.max_images is None else str(spec.max_images),
        UNCHECKED if spec.max_prompt is None else f"{spec.max_prompt:,}",
        ", ".join(sorted(spec.output_formats)) or "—",
        "yes" if spec.google_search else "—",
        "required" if spec.callback_required else "optional" if driver.supports_callback else "—",
        _extras(spec, driver.options),
    ]
    return "| " + " | ".join(cells) + " |"


def render() -> str:
    """The table: a row per provider and canonical model it sells, naming the provider's own
    ids for the same model, then a row per provider id that differs from every canonical one
    (another channel, other limits)."""
    lines = [
        "| provider | model | resolution | aspect ratio | reference images | prompt characters "
        "| output format | Google Search | callback URL | other options |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, driver in DRIVERS.items():
        own = {m: spec for m, spec in driver.models.items() if m not in CANONICAL_MODELS}
        for model in CANONICAL_MODELS:
            spec = driver.models.get(model)
            if spec is not None:
                same = [m for m, other in own.items() if other == spec]
                lines.append(_row(name, model, spec, driver, same))
                for m in same:
                    del own[m]
        lines += [_row(name, model, spec, driver, []) for model, spec in own.items()]
    return "\n".join(lines) + "\n"


def test_readme_table_is_the_drivers_tables() -> None:
    """Every cell of the README table matches what validation enforces."""
    found = BLOCK.search(README.read_text())
    assert found is not None, "README.md lost its <!-- accepts:begin/end --> block"
    assert found.group(1) == render(), "run: python -m tests.unit.test_provider_table"


if __name__ == "__main__":
    text = README.read_text()
    README.write_text(BLOCK.sub(f"<!-- accepts:begin -->\n{render()}<!-- accepts:end -->", text))
