"""The live DVCLive folder and the kept checkpoints, without a model: a resumed series equals
one that never stopped, and the kept selection survives a resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from aiprod_recipes.names import LIVE_IMAGES, LIVE_PLOTS, LIVE_VIDEOS, METRICS_FILE
from aiprod_recipes.training.kept import KeptCheckpoints, select
from aiprod_recipes.training.live import LiveLog, animated_preview


def frames(step: int) -> np.ndarray:
    return np.full((9, 40, 48, 3), step * 20 % 255, dtype=np.uint8)


def run(folder: Path, history: Path, steps: range, resumed: int, mp4: Path) -> LiveLog:
    live = LiveLog(folder, history, resumed)
    for step in steps:
        live.log(step, {"train/lr": 0.1, "train/loss": 1.0 / step})
        if step % 2 == 0:
            live.log(step, {"val/loss": 2.0 / step})
            live.preview("sample_00", step, frames(step), 24.0)
            live.video("sample_00", step, mp4)
    live.close()
    return live


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resumed_series_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    mp4 = tmp_path / "x.mp4"
    mp4.write_bytes(b"not really an mp4")
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    run(whole / "live", whole / "history.jsonl", range(1, 9), 0, mp4)
    # A run killed after step 6 whose last checkpoint was step 4, then resumed at 4.
    run(cut / "live", cut / "history.jsonl", range(1, 7), 0, mp4)
    assert (cut / "live" / LIVE_IMAGES / "sample_00" / "6.gif").exists()
    run(cut / "live", cut / "history.jsonl", range(5, 9), 4, mp4)
    assert snapshot(cut / "live") == snapshot(whole / "live")
    rows = (whole / "live" / LIVE_PLOTS / "val" / "loss.tsv").read_text().splitlines()
    assert [r.split("\t")[0] for r in rows] == ["step", "2", "4", "6", "8"]
    summary = json.loads((whole / "live" / METRICS_FILE).read_text())
    assert summary["step"] == 8 and summary["val"]["loss"] == 0.25
    assert sorted(p.name for p in (whole / "live" / LIVE_VIDEOS / "sample_00").iterdir()) == [
        "2.mp4", "4.mp4", "6.mp4", "8.mp4"]


def test_a_fresh_run_empties_the_folder(tmp_path: Path) -> None:
    mp4 = tmp_path / "x.mp4"
    mp4.write_bytes(b"x")
    run(tmp_path / "live", tmp_path / "h.jsonl", range(1, 5), 0, mp4)
    run(tmp_path / "live", tmp_path / "h.jsonl", range(1, 2), 0, mp4)
    assert not (tmp_path / "live" / LIVE_IMAGES).exists()
    assert json.loads((tmp_path / "live" / METRICS_FILE).read_text())["step"] == 1


def test_preview_is_an_animated_gif(tmp_path: Path) -> None:
    ramp = np.stack([np.full((300, 400, 3), 10 * k, dtype=np.uint8) for k in range(25)])
    path = tmp_path / "p.gif"
    animated_preview(ramp, 24.0).save(path)
    with Image.open(path) as im:
        assert im.n_frames == 13 and max(im.size) == 256 and im.info["loop"] == 0
        assert im.info["duration"] == 80  # 2 frames at 24 fps, in GIF's 1/100 s


def test_select_keeps_the_last_k_and_the_best() -> None:
    assert select([3, 4, 6, 8, 9, 12], {4: 0.5, 8: 0.2, 12: 0.3}, 2) == [8, 9, 12]
    assert select([3, 6, 9], {}, 2) == [6, 9]
    assert select([4, 8], {4: 0.1, 8: 0.1}, 0) == [4]


def test_kept_files_survive_a_resume(tmp_path: Path) -> None:
    def write(step: int):
        return lambda p: Path(p).write_text(str(step))

    kept = KeptCheckpoints(tmp_path / "kept", 1, 0)
    for step in (2, 4):
        kept.save(step, write(step))
        kept.prune({})
    kept.save(6, write(6))  # killed before the checkpoint at 6 and the prune
    resumed = KeptCheckpoints(tmp_path / "kept", 1, 4)
    assert resumed.steps() == [4]
    resumed.save(6, write(6))
    index = resumed.publish(tmp_path / "out", {4: 0.3, 6: 0.4})
    assert [e["step"] for e in index["checkpoints"]] == [4, 6]
    assert index["best"] == "step_000004.safetensors"
    assert (tmp_path / "out" / "step_000006.safetensors").read_text() == "6"
