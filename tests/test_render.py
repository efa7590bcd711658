"""dvc.yaml is rendered from the registry; the committed one must match."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from aiprod_recipes import render
from aiprod_recipes.cli import main
from aiprod_recipes.names import STAGES_DIR
from aiprod_recipes.registry import stages_for
from aiprod_recipes.specio import decode_spec, load_spec
from tests.conftest import REPO


def test_committed_dvc_yaml_matches_the_registry() -> None:
    spec = load_spec(REPO / "params.toml")
    committed = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert committed == render.render(spec), "run `aiprod-recipes render`"


def test_committed_resolved_spec_matches_params_toml() -> None:
    """What the validate stage writes for the committed spec is committed with it."""
    from aiprod_recipes.names import resolved_spec_path
    from aiprod_recipes.specio import resolved_text

    spec = load_spec(REPO / "params.toml")
    assert (REPO / resolved_spec_path()).read_text(encoding="utf-8") == resolved_text(spec)


def test_check_flags_a_stale_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "params.toml").write_text((REPO / "params.toml").read_text())
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["render"]) == 0
        assert main(["render", "--check"]) == 0
        doc = yaml.safe_load(Path("dvc.yaml").read_text())
        doc["stages"]["extra"] = {"cmd": "true"}
        Path("dvc.yaml").write_text(yaml.safe_dump(doc))
        assert main(["render", "--check"]) == 1
        assert "aiprod-recipes render" in capsys.readouterr().err
    finally:
        os.chdir(cwd)


def test_every_stage_declares_params_and_writes_under_data_stages() -> None:
    spec = decode_spec({})
    for stage in stages_for(spec):
        entry = render.render_stage(stage, spec)
        if stage.name == "validate":
            assert "params" not in entry and entry["deps"][0] == "params.toml"
        else:
            assert entry["params"] == [{"data/stages/validate/resolved.json":
                                        list(stage.params(spec))}]
        assert entry["cmd"] == f"aiprod-recipes run {stage.name}"
        for out in stage.outputs():
            assert Path(out.path).is_relative_to(STAGES_DIR)


def test_a_real_checkpoint_is_a_dependency() -> None:
    spec = decode_spec({"model": {"source": {"type": "checkpoint", "path": "m/ltx.safetensors",
                                             "gemma_dir": "m/gemma"}}})
    names = [s.name for s in stages_for(spec)]
    assert "base" not in names
    for stage in stages_for(spec):
        if stage.uses_model:
            assert "m/ltx.safetensors" in render.render_stage(stage, spec)["deps"]


def _make(*args: str) -> str:
    """What make would run (``-n``: nothing runs), from the repository's Makefile."""
    proc = subprocess.run(["make", "-n", "-s", *args], cwd=REPO, text=True, capture_output=True,
                          check=True, env={**os.environ, "VENV": ".venv"})
    return proc.stdout


def test_every_stage_is_a_make_target() -> None:
    spec = load_spec(REPO / "params.toml")
    help_text = subprocess.run(["make", "help"], cwd=REPO, text=True, capture_output=True,
                               check=True).stdout
    for stage in stages_for(spec):
        assert f"dvc repro {stage.name}" in _make(stage.name)
        assert f"{stage.name} " in help_text and stage.description in help_text
    assert "dvc exp run -S lora.rank=32 -S optim.learning_rate=0.001" in _make(
        "exp", "S=lora.rank=32 optim.learning_rate=0.001")


def test_check_flags_a_stale_makefile(tmp_path: Path, capsys) -> None:
    (tmp_path / "params.toml").write_text((REPO / "params.toml").read_text())
    (tmp_path / "Makefile").write_text((REPO / "Makefile").read_text())
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["render"]) == 0
        assert main(["render", "--check"]) == 0
        text = Path("Makefile").read_text().replace("dvc repro split", "dvc repro nothing")
        Path("Makefile").write_text(text)
        assert main(["render", "--check"]) == 1
        assert "Makefile" in capsys.readouterr().err
        assert main(["render"]) == 0
        assert "dvc repro split" in Path("Makefile").read_text()
    finally:
        os.chdir(cwd)


def test_periodic_validation_declares_the_eval_sections_only_when_on(tmp_path: Path) -> None:
    from aiprod_recipes.registry import get_stage

    off, on = decode_spec({}), decode_spec({"eval": {"every_steps": 5}})

    def train_params(spec) -> list[str]:
        entry = render.render_stage(get_stage("train", spec), spec)
        return entry["params"][0]["data/stages/validate/resolved.json"]

    assert not {"eval", "text_encoder", "ingest"} & set(train_params(off))
    assert {"eval", "text_encoder"} <= set(train_params(on))
    assert "ingest" not in train_params(on)  # samples play at the stored clips' rate
    rendered = tmp_path / "dvc.yaml"
    rendered.write_text(render.render_text(off))
    assert render.is_current(off, rendered) and not render.is_current(on, rendered)
    images = "data/stages/train-live/plots/images"
    assert images not in render.render(off)["plots"] and images in render.render(on)["plots"]
