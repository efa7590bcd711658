"""Named recipe presets: complete TOML specs kept in the repository's recipes/ folder."""

from __future__ import annotations

from pathlib import Path

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"


class UnknownRecipe(LookupError):
    """A preset name with no file in recipes/."""


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
