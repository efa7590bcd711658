"""`dvc exp run -S lora.rank=32`, exactly as users type it, edits params.toml.

This runs the real DVC executable of the environment in a throw-away git + DVC repository
with a two-stage pipeline. It depends on the start-up hook that `aiprod-recipes setup-dvc`
installs (the Makefile does it); if a DVC release breaks the hook, these tests fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from aiprod_recipes import dvc_bare_params
from tests.conftest import BIN, git_commit, run_cmd

PARAMS = """\
[data]
name = "clips"

[lora]
rank = 16
alpha = 16.0
"""

DVC_YAML = """\
stages:
  prep:
    cmd: python -c "import tomllib; d = tomllib.load(open('params.toml', 'rb')); open('prep.txt', 'w').write(d['data']['name'])"
    params:
      - params.toml:
          - data
    outs:
      - prep.txt
  fit:
    cmd: python -c "import tomllib; d = tomllib.load(open('params.toml', 'rb')); open('fit.txt', 'w').write(open('prep.txt').read() + str(d['lora']['rank']))"
    deps:
      - prep.txt
    params:
      - params.toml:
          - lora
    outs:
      - fit.txt
"""


@pytest.fixture
def pipeline(git_dvc_repo: Path) -> Path:
    assert dvc_bare_params.pth_path().is_file(), (
        "the bare -S hook is not installed in this environment: run `aiprod-recipes setup-dvc`"
    )
    (git_dvc_repo / "params.toml").write_text(PARAMS)
    (git_dvc_repo / "dvc.yaml").write_text(DVC_YAML)
    run_cmd([str(BIN / "dvc"), "repro", "-q"], git_dvc_repo)
    git_commit(git_dvc_repo, "pipeline")
    return git_dvc_repo


def _exp_run(repo: Path, override: str) -> str:
    proc = run_cmd([str(BIN / "dvc"), "exp", "run", "-S", override], repo)
    return proc.stdout + proc.stderr


def _check_only_fit_reran(repo: Path, log: str) -> None:
    assert tomllib.loads((repo / "params.toml").read_text())["lora"]["rank"] == 32
    assert not (repo / "params.yaml").exists()
    assert (repo / "fit.txt").read_text() == "clips32"
    assert "Running stage 'fit'" in log
    assert "Running stage 'prep'" not in log


def test_bare_set_param_edits_params_toml(pipeline: Path) -> None:
    _check_only_fit_reran(pipeline, _exp_run(pipeline, "lora.rank=32"))


def test_prefixed_set_param_still_works(pipeline: Path) -> None:
    _check_only_fit_reran(pipeline, _exp_run(pipeline, "params.toml:lora.rank=32"))


def test_projects_with_params_yaml_keep_dvc_behaviour(tmp_path: Path) -> None:
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "params.toml").write_text(PARAMS)
    overrides = {"params.yaml": ["lora.rank=32"]}
    assert dvc_bare_params.remap(overrides, tmp_path) == {"params.toml": ["lora.rank=32"]}
    (tmp_path / "params.yaml").write_text("lora: {rank: 1}\n")
    assert dvc_bare_params.remap(overrides, tmp_path) == overrides


def test_the_dvc_internal_is_still_there() -> None:
    import dvc.repo.experiments.run as target

    dvc_bare_params.patch(target)
    assert hasattr(target.to_path_overrides, "__wrapped__")


def test_the_hook_targets_the_spec_file() -> None:
    from aiprod_recipes.specio import DEFAULT_SPEC

    assert DEFAULT_SPEC.as_posix() == dvc_bare_params.PROJECT_PARAMS
