"""The package's layout promises: floors that import only downwards, and one table entry
for every variant the spec offers (strategies, caption backends, scene detectors)."""

from __future__ import annotations

import ast
from pathlib import Path

from aiprod_recipes.captioning.backends import backend_types
from aiprod_recipes.media.scenes import DETECTORS
from aiprod_recipes.spec import Captioner, Detector, StrategyConfig
from aiprod_recipes.training.strategies import STRATEGIES, strategy_for
from tests.conftest import REPO

PACKAGE = REPO / "aiprod_recipes"

FLOORS: list[tuple[str, ...]] = [
    ("spec", "names", "specio", "dvc_bare_params", "recipes"),
    ("model", "media", "store", "provenance"),
    ("captioning", "training", "inference", "planner"),
    ("stages",),
    ("registry", "codedeps", "render", "makefile", "runtime", "worker"),
    ("cli", "__main__", "__init__"),
]
"""Bottom up: a module may import its own floor and the floors below, never above."""


def floor_of(module: str) -> int:
    """The floor of ``aiprod_recipes.X[.Y]`` by its first component."""
    head = module.removeprefix("aiprod_recipes").lstrip(".").split(".")[0] or "__init__"
    for level, names in enumerate(FLOORS):
        if head in names:
            return level
    raise AssertionError(f"aiprod_recipes.{head} has no floor in tests/test_layout.py")


def imports_of(path: Path) -> set[str]:
    """Every ``aiprod_recipes`` module a file imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "aiprod_recipes":
                found |= {f"aiprod_recipes.{a.name}" for a in node.names}
            elif node.module.startswith("aiprod_recipes."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("aiprod_recipes.")}
    return found


def test_imports_only_go_down() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        own = floor_of(module)
        upward += [f"{module} -> {target}" for target in sorted(imports_of(path))
                   if floor_of(target) > own]
    assert not upward, "imports from a lower floor to a higher one:\n" + "\n".join(upward)


def _tags(union: object) -> set[str]:
    return {str(t.__struct_config__.tag) for t in union.__args__}  # type: ignore[attr-defined]


def test_every_strategy_has_its_class() -> None:
    assert set(STRATEGIES) == _tags(StrategyConfig)
    for struct in StrategyConfig.__args__:  # type: ignore[attr-defined]
        assert strategy_for(struct()).tag == struct.__struct_config__.tag


def test_every_caption_backend_and_detector_is_implemented() -> None:
    assert set(backend_types()) == _tags(Captioner)
    assert set(DETECTORS) | {"none"} == _tags(Detector)
