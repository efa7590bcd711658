"""Intermediate adapters kept as outputs (``train.keep_checkpoints = K``): the last K saved,
plus the one with the best held-out loss when periodic validation is on.

A run saves one file (the same format and header as the final adapter, or the full
weights) at every resumable-checkpoint step and every validation step, into a folder beside
the resumable checkpoint. Files that fall out of the selection are deleted only after a
resumable checkpoint is written, so a killed run that resumes at step S still finds every
file the selection at S needs; files of steps after S (written by the killed run after its
last checkpoint) are removed on resume and written again, byte for byte, when the resumed
run reaches those steps. At the end the selection is copied into the train output with an
index that names each file's step and held-out loss, and the best one.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aiprod_recipes.names import KEPT_INDEX_FILE, kept_checkpoint_name

__all__ = ["KeptCheckpoints", "select"]


def select(steps: list[int], val_losses: Mapping[int, float], keep: int) -> list[int]:
    """The steps to keep: the last ``keep`` of ``steps``, and the one of lowest held-out loss
    among ``steps`` (the earliest on a tie), sorted."""
    ordered = sorted(steps)
    chosen = set(ordered[-keep:]) if keep else set()
    scored = [(val_losses[s], s) for s in ordered if s in val_losses]
    if scored:
        chosen.add(min(scored)[1])
    return sorted(chosen)


def _step(path: Path) -> int | None:
    stem = path.stem.removeprefix("step_")
    return int(stem) if path.suffix == ".safetensors" and stem.isdigit() else None


class KeptCheckpoints:
    """The kept files of one run, in ``folder`` (beside its resumable checkpoint)."""

    def __init__(self, folder: Path, keep: int, resumed_step: int) -> None:
        self.folder, self.keep = Path(folder), keep
        if not resumed_step:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        for path in self.folder.iterdir():
            at = _step(path)
            if at is None or at > resumed_step:
                path.unlink()

    def steps(self) -> list[int]:
        """The steps with a saved file, sorted."""
        return sorted(s for p in self.folder.iterdir() if (s := _step(p)) is not None)

    def save(self, step: int, write: Callable[[Path], Any]) -> Path:
        """``write(path)`` writes the weights of ``step``; a file at its name is complete."""
        path = self.folder / kept_checkpoint_name(step)
        tmp = self.folder / f".{path.name}.tmp"
        write(tmp)
        os.replace(tmp, path)
        return path

    def prune(self, val_losses: Mapping[int, float]) -> None:
        """Delete what the selection no longer needs (call after a resumable checkpoint)."""
        keep = set(select(self.steps(), val_losses, self.keep))
        for step in self.steps():
            if step not in keep:
                (self.folder / kept_checkpoint_name(step)).unlink()

    def publish(self, dest: Path, val_losses: Mapping[int, float]) -> dict[str, Any]:
        """Copy the selection into ``dest`` with ``index.json``; returns the index."""
        chosen = select(self.steps(), val_losses, self.keep)
        best = min(((val_losses[s], s) for s in chosen if s in val_losses), default=None)
        dest.mkdir(parents=True, exist_ok=True)
        entries = []
        for step in chosen:
            name = kept_checkpoint_name(step)
            shutil.copyfile(self.folder / name, dest / name)
            entries.append({"file": name, "step": step, "val_loss": val_losses.get(step)})
        index = {"checkpoints": entries,
                 "best": None if best is None else kept_checkpoint_name(best[1])}
        (dest / KEPT_INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        return index
