"""The Makefile's stage targets, rendered from the stage registry.

Every stage is also a make target (``make ingest`` ... ``make evaluate``), each running
``dvc repro STAGE`` in the project's environment, so a new stage gets its target from the
registry alone. The targets live in a marked block of the Makefile (the top level of the
repository is fixed, so there is no separate include file); ``aiprod-recipes render``
rewrites the block and ``render --check`` reports a stale one. A project without a
Makefile, or without the block, has nothing to render here.
"""

from __future__ import annotations

from pathlib import Path

from aiprod_recipes.registry import StageDef

MAKEFILE = Path("Makefile")
BEGIN = "# >>> stage targets: rendered by `aiprod-recipes render` from the stage registry <<<"
END = "# >>> end of stage targets <<<"


def stage_block(stages: tuple[StageDef, ...]) -> str:
    """The block: one ``dvc repro`` target per stage, with its description for make help."""
    names = " ".join(s.name for s in stages)
    lines = [BEGIN, f"STAGES := {names}", ".PHONY: $(STAGES)", ""]
    for stage in stages:
        lines += [f"{stage.name}: install ## stage: {stage.description}",
                  f"\t$(BIN)/dvc repro {stage.name}", ""]
    lines.append(END)
    return "\n".join(lines)


def _split(text: str) -> tuple[str, str, str] | None:
    """(before, block, after) of a Makefile's text, or None without the markers."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        return None
    end += len(END)
    return text[:start], text[start:end], text[end:]


def is_current(stages: tuple[StageDef, ...], path: Path = MAKEFILE) -> bool:
    """True when there is no block to render, or the block matches the registry."""
    if not path.is_file():
        return True
    parts = _split(path.read_text(encoding="utf-8"))
    return parts is None or parts[1] == stage_block(stages)


def write(stages: tuple[StageDef, ...], path: Path = MAKEFILE) -> bool:
    """Rewrite the block in place; False when the Makefile has none."""
    if not path.is_file():
        return False
    parts = _split(path.read_text(encoding="utf-8"))
    if parts is None:
        return False
    before, _, after = parts
    path.write_text(before + stage_block(stages) + after, encoding="utf-8")
    return True
