"""Every file a stage reads is inside the project and a dependency in dvc.yaml, or the spec
is rejected naming the key (tests/test_spec_ranges.py holds the rejections)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aiprod_recipes import render
from aiprod_recipes.names import VALIDATE
from aiprod_recipes.registry import get_stage, stage_deps
from aiprod_recipes.runtime import StageFailed, run_stage
from aiprod_recipes.specio import decode_spec, load_spec
from tests.conftest import dvc_status
from tests.e2e_fixtures import set_param

MANIFEST = {"caption": {"backend": {"type": "sidecar", "manifest": "../captions.csv"}},
            "data": {"raw_dir": "data/raw"}}


def test_a_caption_manifest_is_a_dependency_of_the_caption_stage() -> None:
    spec = decode_spec(MANIFEST)
    deps = stage_deps(get_stage("caption", spec), spec)
    assert deps[:3] == ["data/raw", "data/stages/ingest", "data/captions.csv"]


def test_a_local_captioning_model_is_a_dependency() -> None:
    spec = decode_spec({"caption": {"backend": {"type": "qwen_omni",
                                                "model_dir": "/models/qwen-omni/"}}})
    assert "/models/qwen-omni" in stage_deps(get_stage("caption", spec), spec)


def test_an_absolute_checkpoint_is_a_dependency_of_every_model_stage() -> None:
    spec = decode_spec({"model": {"source": {"type": "checkpoint",
                                             "path": "/models/ltx-2.safetensors",
                                             "gemma_dir": "/models/gemma"}}})
    for name in ("embed", "latents", "reference", "train", "evaluate"):
        deps = stage_deps(get_stage(name, spec), spec)
        assert {"/models/ltx-2.safetensors", "/models/gemma"} <= set(deps), name


def test_a_missing_manifest_is_named_before_the_stage_runs(project: Path) -> None:
    from tests.conftest import write_spec

    write_spec(project, data={"raw_dir": "raw"},
               caption={"backend": {"type": "sidecar", "manifest": "captions.csv"}})
    with pytest.raises(StageFailed, match=r"missing input\(s\):.*raw/captions.csv"):
        run_stage("caption")


def test_editing_the_manifest_makes_captions_stale(locked_project: Path) -> None:
    """The issue's case: a manifest named relative to the clips folder, outside it; an edit
    of the manifest must show up in ``dvc status`` as a change of the caption stage."""
    from dvc.repo import Repo

    root = locked_project
    manifest = root / "data" / "captions.csv"
    manifest.write_text("clip,caption\n", encoding="utf-8")
    set_param(root, "caption.backend", {"type": "sidecar", "manifest": "../captions.csv"})
    render.write(load_spec(root / "params.toml"), root / "dvc.yaml")
    cwd = Path.cwd()
    os.chdir(root)
    try:
        run_stage(VALIDATE)
        with Repo() as repo:
            repo.commit(force=True)
    finally:
        os.chdir(cwd)
    assert dvc_status(root) == {}
    manifest.write_text("clip,caption\npulse.mp4,a pulsing light\n", encoding="utf-8")
    status = dvc_status(root)
    assert set(status) == {"caption"}
    assert status["caption"] == [{"changed deps": {"data/captions.csv": "modified"}}]
