"""Training metrics and validation previews in DVCLive while the stage runs, continued
without duplicates when a killed run resumes.

The folder (``names.TRAIN_LIVE_DIR``) is a persisted output of the train stage, outside its
atomic output folder: DVC leaves it in place while the stage runs, so ``dvc exp show``,
``dvc plots show`` / ``dvc plots diff`` and the VS Code extension (woken by DVCLive's
step-completed signal) read it at every log step, not only when training ends.

Every logged row is also kept in a history file beside the resumable checkpoint. A fresh
run empties the folder. A run that resumes at step S keeps the previews and videos of steps
<= S, drops later ones (written after the checkpoint it resumes from), and rebuilds the
metric files from the history rows <= S before it continues: every step is in the files
once, and they equal those of a run that never stopped.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aiprod_recipes.names import LIVE_IMAGES, LIVE_PLOTS, LIVE_VIDEOS, METRICS_FILE

__all__ = ["HISTORY_FILE", "LiveLog", "animated_preview", "read_history"]

HISTORY_FILE = "history.jsonl"
"""The logged rows, kept with the resumable checkpoint."""
PREVIEW_MAX_SIDE = 256
"""Longest side of an animated preview in pixels (the mp4 beside it has full size)."""
PREVIEW_MAX_FPS = 12.0
"""Frame rate cap of a preview: every k-th frame, so a long sample stays a small GIF."""


def read_history(path: Path, up_to: int) -> list[dict[str, Any]]:
    """The rows of ``path`` with step <= ``up_to`` (none when the file is absent)."""
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    return [r for r in rows if r["step"] <= up_to]


def _canonical(row: dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=True, separators=(",", ":"))


def _step_of(path: Path) -> int | None:
    return int(path.stem) if path.stem.isdigit() else None


def _prune(folder: Path, step: int) -> None:
    """Keep the media of steps <= ``step``; the metric files are rebuilt from the history."""
    shutil.rmtree(folder / LIVE_PLOTS, ignore_errors=True)
    (folder / METRICS_FILE).unlink(missing_ok=True)
    for sub in (LIVE_IMAGES, LIVE_VIDEOS):
        for path in sorted((folder / sub).rglob("*")):
            if not path.is_file():
                continue
            at = _step_of(path)
            if path.name.startswith(".") or (at is not None and at > step):
                path.unlink()


def animated_preview(frames: np.ndarray, fps: float) -> Any:
    """uint8 frames [F, H, W, 3] -> a PIL image that saves as a looping animated GIF.

    Downscaled to ``PREVIEW_MAX_SIDE`` and at most ``PREVIEW_MAX_FPS``. DVCLive's
    ``log_image`` saves what it is given with ``image.save(path)``: the other frames and
    the timing ride along in that bound call.
    """
    import cv2
    from PIL import Image

    stride = max(1, round(fps / PREVIEW_MAX_FPS))
    picked = frames[::stride]
    h, w = picked.shape[1:3]
    scale = min(1.0, PREVIEW_MAX_SIDE / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    images = [Image.fromarray(f if scale == 1.0 else cv2.resize(f, size,
                                                                  interpolation=cv2.INTER_AREA))
              for f in picked]
    first = images[0]
    save = first.save

    def save_all(path: Any, *args: Any, **kwargs: Any) -> None:
        save(path, format="GIF", save_all=True, append_images=images[1:],
             duration=round(1000 * stride / fps), loop=0, optimize=False)

    first.save = save_all  # type: ignore[method-assign]
    return first


class LiveLog:
    """DVCLive in ``folder``, one row per ``log`` call, with the history in ``history``."""

    def __init__(self, folder: Path, history: Path, resumed_step: int) -> None:
        from dvclive import Live

        self.folder, self.history = Path(folder), Path(history)
        rows = read_history(self.history, resumed_step) if resumed_step else []
        if resumed_step:
            _prune(self.folder, resumed_step)
        else:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.history.parent.mkdir(parents=True, exist_ok=True)
        self.history.write_text("".join(_canonical(r) + "\n" for r in rows))
        self.live = Live(str(self.folder), resume=True, dvcyaml=None, save_dvc_exp=False)
        for row in rows:
            self._write(row)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """One row of metrics (names such as ``train/loss``) at ``step``, flushed to disk."""
        row = {"step": step, **metrics}
        with open(self.history, "a") as f:
            f.write(_canonical(row) + "\n")
        self._write(row)

    def _write(self, row: dict[str, Any]) -> None:
        self.live.step = row["step"]
        for name in sorted(row):  # one order, live or replayed: metrics.json's keys follow it
            if name != "step":
                self.live.log_metric(name, row[name])
        self.live.next_step()

    def preview(self, name: str, step: int, frames: np.ndarray, fps: float) -> Path:
        """An animated preview of a sample at ``step``: ``plots/images/<name>/<step>.gif``."""
        self.live.step = step
        self.live.log_image(f"{name}/{step}.gif", animated_preview(frames, fps))
        return self.folder / LIVE_IMAGES / name / f"{step}.gif"

    def video(self, name: str, step: int, mp4: Path) -> Path:
        """The full sample with its sound beside the previews: ``videos/<name>/<step>.mp4``."""
        dest = self.folder / LIVE_VIDEOS / name / f"{step}.mp4"
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        shutil.copyfile(mp4, tmp)
        os.replace(tmp, dest)
        return dest

    def rows(self, prefix: str = "") -> Sequence[dict[str, Any]]:
        """Every row so far (those with a metric starting with ``prefix``)."""
        rows = read_history(self.history, 2**62)
        return [r for r in rows if any(k.startswith(prefix) for k in r if k != "step")]

    def close(self) -> None:
        self.live.end()
