"""Every preset decodes; init, validate and show behave as documented."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aiprod_recipes import recipes
from aiprod_recipes.cli import main
from aiprod_recipes.specio import load_spec
from tests.conftest import REPO

PRESETS = ["ltx2-av-lora", "ltx2-av-lora-lowvram", "ltx2-i2v-lora", "ltx2-v2v-ic-lora", "tiny"]


def test_the_five_presets_exist() -> None:
    assert recipes.names() == PRESETS


@pytest.mark.parametrize("name", PRESETS)
def test_preset_decodes(name: str) -> None:
    spec = load_spec(recipes.recipe_path(name))
    assert spec.lora.rank >= 1
    assert main(["validate", str(recipes.recipe_path(name))]) == 0


def test_lowvram_preset_is_what_it_says() -> None:
    spec = load_spec(recipes.recipe_path("ltx2-av-lora-lowvram"))
    assert spec.quant.base == "int8"
    assert spec.optim.optimizer == "adamw8bit"
    assert spec.lora.rank == 16
    assert spec.train.gradient_checkpointing


def test_params_toml_is_the_tiny_default() -> None:
    assert load_spec(REPO / "params.toml") == load_spec(recipes.recipe_path("tiny"))


def test_init_refuses_to_overwrite(tmp_path: Path, capsys) -> None:
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["init", "--recipe", "ltx2-i2v-lora"]) == 0
        assert load_spec("params.toml").strategy.__struct_config__.tag == "image_to_video"
        assert Path("dvc.yaml").is_file()
        assert main(["init", "--recipe", "tiny"]) == 2
        assert "--force" in capsys.readouterr().err
        assert main(["init", "--recipe", "tiny", "--force"]) == 0
        assert main(["init", "--recipe", "nope", "--force"]) == 2
        assert "presets:" in capsys.readouterr().err
        assert main(["show"]) == 0
        assert "[lora]" in capsys.readouterr().out
    finally:
        os.chdir(cwd)


# --------------------------------------------------------------------------- as shipped

OVERLAY_KEYS = {"model.source", "model.device", "video.buckets", "train.steps",
                "train.checkpoint_every", "train.log_every", "eval.max_samples", "eval.steps",
                "eval.bucket"}
"""What the tiny-model overlay may change in a preset: the model and sizes, nothing else."""


def _flat(doc: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in doc.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and "type" not in value:
            out.update(_flat(value, dotted + "."))
        else:
            out[dotted] = value
    return out


@pytest.mark.parametrize("name", PRESETS)
def test_the_tiny_model_overlay_changes_only_the_model_and_sizes(name: str) -> None:
    import tomllib

    from aiprod_recipes.specio import decode_spec, spec_to_builtins

    plain = decode_spec(tomllib.loads(recipes.compose(name)))
    tried = decode_spec(tomllib.loads(recipes.compose(name, "tiny-model")))
    a, b = _flat(spec_to_builtins(plain)), _flat(spec_to_builtins(tried))
    assert {k.removesuffix(".width").removesuffix(".height").removesuffix(".frames")
            for k in a if a[k] != b[k]} <= OVERLAY_KEYS
    assert tried.model.source.__struct_config__.tag == "tiny"
    assert tried.strategy == plain.strategy and tried.quant == plain.quant
    assert tried.lora == plain.lora and tried.optim == plain.optim


def test_init_takes_an_overlay_file(tmp_path: Path, capsys) -> None:
    overlay = tmp_path / "mine.toml"
    overlay.write_text("[lora]\nrank = 4\n")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["init", "--recipe", "ltx2-i2v-lora", "--overlay", str(overlay)]) == 0
        spec = load_spec("params.toml")
        assert spec.lora.rank == 4 and spec.lora.alpha == 32.0
        assert main(["init", "--recipe", "tiny", "--overlay", "nope", "--force"]) == 2
        assert "tiny-model" in capsys.readouterr().err
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("name", PRESETS)
def test_dvc_reads_every_param_of_a_fresh_preset(name: str, tmp_path: Path) -> None:
    """``dvc status`` right after ``init``: every stage's params resolve (DVC's
    "Parameters ... are missing" cannot happen, whatever sections a preset leaves out)."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    from tests.conftest import init_git_dvc

    root = init_git_dvc(tmp_path / "project")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert main(["init", "--recipe", name, "--force"]) == 0
        with Repo() as repo:
            params = [d for s in repo.index.stages for d in s.deps
                      if isinstance(d, ParamsDependency)]
            assert params
            for dep in params:
                dep.get_hash()  # raises MissingParamsError for a missing key
            status = repo.status()
        assert "validate" in status
        for stage in status.values():  # a params file reports {key: state}; files a word
            for entry in stage:
                for changed in (entry.get("changed deps") or {}).values():
                    assert not isinstance(changed, dict) or "deleted" not in changed.values()
    finally:
        os.chdir(cwd)
