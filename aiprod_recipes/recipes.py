"""Named recipe presets (TOML specs in the repository's recipes/ folder) and overlays.

A preset writes only what it means to set; every other key keeps its default (the validate
stage resolves them for DVC, so a left-out section never breaks a run). An overlay is a
small TOML file whose keys replace the preset's: recipes/overlays/tiny-model.toml swaps in
the tiny model and small sizes, so any preset can be tried end to end on a CPU in minutes
before a GPU run (``aiprod-recipes init --recipe NAME --overlay tiny-model``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomlkit
import tomllib

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"
OVERLAYS_DIR = RECIPES_DIR / "overlays"


class UnknownRecipe(LookupError):
    """A preset or overlay name with no file, or an overlay file that cannot be read."""


def recipe_path(name: str) -> Path:
    """The file of a preset, with the list of presets in the error when it does not exist."""
    path = RECIPES_DIR / f"{name}.toml"
    if not path.is_file():
        raise UnknownRecipe(
            f"no recipe named {name!r} in {RECIPES_DIR}; presets: {', '.join(names())}"
        )
    return path


def names() -> list[str]:
    """Every preset's name."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))


def overlay_names() -> list[str]:
    """Every shipped overlay's name."""
    return sorted(p.stem for p in OVERLAYS_DIR.glob("*.toml"))


def overlay_path(name_or_file: str) -> Path:
    """A shipped overlay by name, or any TOML file by path."""
    shipped = OVERLAYS_DIR / f"{name_or_file}.toml"
    if shipped.is_file():
        return shipped
    path = Path(name_or_file)
    if path.is_file():
        return path
    raise UnknownRecipe(f"no overlay {name_or_file!r}: neither a file nor one of "
                        f"{', '.join(overlay_names())} (in {OVERLAYS_DIR})")


def _inline(value: Any) -> Any:
    """A value written the way presets write them: tables inline, arrays of tables one
    per line."""
    if isinstance(value, dict):
        table = tomlkit.inline_table()
        table.update({k: _inline(v) for k, v in value.items()})
        return table
    if isinstance(value, list):
        array = tomlkit.array()
        array.extend(_inline(v) for v in value)
        return array.multiline(any(isinstance(v, dict) for v in value))
    return value


def _merge(base: Any, over: dict[str, Any], top: bool = True) -> None:
    """Overlay keys into a parsed document: sections merge key by key (a missing section
    is added); any other value, a tagged choice (a table with a ``type``) included,
    replaces the preset's whole."""
    for key, value in over.items():
        current = base.get(key)
        if isinstance(value, dict) and "type" not in value and (top or isinstance(current,
                                                                                    dict)):
            if current is None:
                current = tomlkit.table()
                base[key] = current
            _merge(current, value, top=False)
        else:
            base[key] = _inline(value)


def compose(recipe: str, overlay: str | None = None) -> str:
    """The spec text ``init`` writes: the preset (its comments kept), with the overlay's
    keys in place when one is given."""
    text = recipe_path(recipe).read_text(encoding="utf-8")
    if overlay is None:
        return text
    path = overlay_path(overlay)
    try:
        over = tomllib.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise UnknownRecipe(f"overlay {path}: not a UTF-8 TOML file ({e})") from None
    doc = tomlkit.parse(text)
    _merge(doc, over)
    header = f"# Preset {recipe!r} with the overlay {path.name} (aiprod-recipes init).\n"
    return header + tomlkit.dumps(doc)
