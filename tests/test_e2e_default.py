"""The promise of the README: on a fresh checkout, `dvc repro` runs the tiny default end to
end on the CPU with no download, and the adapter beats the base model on held-out clips."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from aiprod_recipes.names import SPEC_FILE
from aiprod_recipes.specio import load_spec
from tests.conftest import BIN, REPO, git_commit, run_cmd

EXPECTED_OUTPUTS = {
    "train": {"adapter.safetensors", "provenance.json"},
    "train-live": {"metrics.json", "plots/metrics/train/loss.tsv"},
    "evaluate": {"metrics.json", "report.md", "report.html", "provenance.json"},
}


def _checkout(dest: Path) -> Path:
    """The project's files as git sees them (tracked and new, not ignored), in a new repo."""
    files = run_cmd(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                    REPO).stdout.split()
    for name in files:
        if (REPO / name).is_file() and not name.startswith("data/stages/"):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    run_cmd(["git", "init", "-q", "-b", "main"], dest)
    run_cmd(["git", "config", "user.email", "test@example.com"], dest)
    run_cmd(["git", "config", "user.name", "test"], dest)
    (dest / "dvc.lock").unlink(missing_ok=True)
    git_commit(dest, "checkout")
    return dest


@pytest.mark.slow
def test_default_recipe_end_to_end(tmp_path: Path) -> None:
    root = _checkout(tmp_path / "checkout")
    proc = run_cmd([str(BIN / "dvc"), "repro"], root)
    log = proc.stdout + proc.stderr
    assert "Results" in log and "held-out loss" in log
    for stage, names in EXPECTED_OUTPUTS.items():
        folder = root / "data" / "stages" / stage
        found = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        assert names <= found, (stage, names - found)
    metrics = json.loads((root / "data/stages/evaluate/metrics.json").read_text())
    assert metrics["num_val_clips"] >= 1
    # one sample per val clip's caption, up to eval.max_samples (the val clips are drawn by
    # content hash, so how many there are follows the clips' bytes)
    assert metrics["num_samples"] == min(metrics["num_val_clips"], load_spec(root / SPEC_FILE)
                                         .eval.max_samples)
    videos = {p.name for p in (root / "data/stages/evaluate/samples").glob("*.mp4")}
    assert videos == {f"sample_{k:02d}.mp4" for k in range(metrics["num_samples"])}
    assert all((root / "data/stages/evaluate/samples" / v).with_suffix(".png").is_file()
               for v in videos)
    assert metrics["loss_adapter"] < metrics["loss_base"]
    again = run_cmd([str(BIN / "dvc"), "repro"], root)
    assert "Data and pipelines are up to date" in again.stdout + again.stderr
