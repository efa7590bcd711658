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
