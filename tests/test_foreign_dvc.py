"""A DVC without this project's start-up hook (pipx, system packages), and the params.yaml
it leaves behind: every stage refuses to run, saying what happened and what to type.

The foreign DVC is the environment's own DVC started with the hook's import finder taken off
before DVC is imported: the same release, as a DVC installed elsewhere runs it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from aiprod_recipes.cli import main
from aiprod_recipes.dvc_bare_params import stray_params_yaml
from aiprod_recipes.names import STAGES_DIR
from aiprod_recipes.registry import all_stages
from tests.conftest import run_cmd, write_spec
from tests.e2e_fixtures import file_sha256s

FOREIGN_DVC = """\
import sys
from aiprod_recipes import dvc_bare_params
sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, dvc_bare_params._Finder)]
from dvc.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _foreign_dvc(repo: Path, *args: str) -> tuple[int, str]:
    proc = run_cmd([sys.executable, "-c", FOREIGN_DVC, *args], repo, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def _assert_says_how_to_fix(log: str, setting: str) -> None:
    assert f"no stage reads params.yaml (it sets {setting})" in log
    assert "`. .venv/bin/activate`" in log
    assert "`aiprod-recipes setup-dvc`" in log
    assert f"`dvc exp run -S params.toml:{setting}`" in log
    assert "Delete params.yaml" in log
    assert "Traceback" not in log


def test_foreign_dvc_params_yaml_stops_the_next_stage(locked_project: Path) -> None:
    root = locked_project
    stages, spec = root / STAGES_DIR, root / "params.toml"
    outputs, spec_text = file_sha256s(stages), spec.read_text()
    assert outputs

    # The bare form fails with DVC's puzzling message: the hook really is off.
    code, log = _foreign_dvc(root, "exp", "run", "-S", "lora.rank=32")
    assert code != 0
    assert "Key 'lora' is not in struct" in log
    assert not (root / "params.yaml").exists()

    # The form that message suggests writes the value where no stage reads it.
    _foreign_dvc(root, "exp", "run", "-S", "+lora.rank=32")
    assert yaml.safe_load((root / "params.yaml").read_text()) == {"lora": {"rank": 32}}
    assert spec.read_text() == spec_text

    # The next experiment stops at the first stage, before any output is touched.
    code, log = _foreign_dvc(root, "exp", "run", "-S", "params.toml:caption.trigger_word=zq")
    assert code != 0
    assert "failed to reproduce 'validate'" in log
    _assert_says_how_to_fix(log, "lora.rank=32")
    assert file_sha256s(stages) == outputs


@pytest.mark.parametrize("stage", [s.name for s in all_stages()])
def test_every_stage_refuses_a_params_yaml(stage: str, project: Path, capsys) -> None:
    write_spec(project, data={"raw_dir": "raw"})
    (project / "params.yaml").write_text("lora:\n  rank: 32\n")
    before = sorted(p.relative_to(project) for p in project.rglob("*"))
    assert main(["run", stage]) == 1
    _assert_says_how_to_fix(capsys.readouterr().err, "lora.rank=32")
    assert sorted(p.relative_to(project) for p in project.rglob("*")) == before


def test_params_yaml_check(tmp_path: Path) -> None:
    spec = tmp_path / "params.toml"
    spec.write_text("")
    assert stray_params_yaml(spec) is None
    (tmp_path / "params.yaml").write_text("[not: yaml")
    message = stray_params_yaml(spec)
    assert message is not None
    assert "no stage reads params.yaml. " in message
    assert "`dvc exp run -S params.toml:lora.rank=32`" in message
