"""Every preset runs as shipped: ``init`` + ``dvc repro`` in a fresh project, on the tiny
model through the documented overlay (recipes/overlays/tiny-model.toml: the model and the
sizes, nothing else), with the clips where the preset expects them. A preset that drifts
from the pipeline (a section DVC cannot find, a setting the tiny run exposes as broken)
fails here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import tomllib

from aiprod_recipes import recipes
from aiprod_recipes.names import EVALUATE, METRICS_FILE, TRAIN, stage_dir
from aiprod_recipes.specio import decode_spec
from tests.conftest import BIN, REPO, git_commit, init_git_dvc, run_cmd
from tests.e2e_fixtures import SAMPLE_CLIPS, _copy_sample, dvc, ran_stages


def _fresh_project(root: Path, preset: str) -> Path:
    """What a user has before ``init``: this repository's code, and their clips in the
    folder the preset names, tracked with ``dvc add``."""
    init_git_dvc(root)
    shutil.copytree(REPO / "aiprod_recipes", root / "aiprod_recipes",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in (".gitignore", ".dvcignore"):
        shutil.copy2(REPO / name, root / name)
    spec = decode_spec(tomllib.loads(recipes.compose(preset, "tiny-model")))
    raw = spec.data.raw_dir
    _copy_sample(root / raw, SAMPLE_CLIPS)
    run_cmd(dvc("add", "-q", raw), root)
    git_commit(root, "code and clips")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("preset", recipes.names())
def test_preset_runs_end_to_end_on_the_tiny_model(preset: str, tmp_path: Path) -> None:
    root = _fresh_project(tmp_path / "project", preset)
    run_cmd([str(BIN / "aiprod-recipes"), "init", "--recipe", preset, "--overlay",
             "tiny-model", "--force"], root)
    proc = run_cmd(dvc("repro"), root)
    ran = ran_stages(proc.stdout + proc.stderr)
    assert {"validate", TRAIN, EVALUATE} <= ran
    assert (root / stage_dir(EVALUATE) / METRICS_FILE).is_file()
    metrics = json.loads((root / stage_dir(EVALUATE) / METRICS_FILE).read_text())
    assert metrics["num_samples"] >= 0
    assert metrics["num_val_clips"] >= 1 and metrics["num_samples"] == 1  # eval.max_samples
    status = run_cmd(dvc("status"), root)
    assert "up to date" in status.stdout, status.stdout
