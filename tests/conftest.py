"""Shared test helpers: the venv's executables and throw-away git + DVC repositories."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["tests.e2e_fixtures"]

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# The suite runs two workers on two cores: one math thread each (and in every subprocess
# they start) avoids oversubscription, which slows small tensor work many times over.
os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(autouse=True)
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_cmd(args: list[str], cwd: Path, check: bool = True, env: dict | None = None
            ) -> subprocess.CompletedProcess[str]:
    """Run a command with the venv first on PATH; show its output when it fails."""
    full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
    proc = subprocess.run(args, cwd=cwd, env=full_env, text=True, capture_output=True)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\n"
            f"stderr:\n{proc.stderr}"
        )
    return proc


def init_git_dvc(path: Path) -> Path:
    """A fresh git + DVC repository with a committer identity and analytics off."""
    path.mkdir(parents=True, exist_ok=True)
    run_cmd(["git", "init", "-q", "-b", "main"], path)
    run_cmd(["git", "config", "user.email", "test@example.com"], path)
    run_cmd(["git", "config", "user.name", "test"], path)
    run_cmd([str(BIN / "dvc"), "init", "-q"], path)
    run_cmd([str(BIN / "dvc"), "config", "core.analytics", "false"], path)
    return path


def git_commit(path: Path, message: str = "commit") -> None:
    run_cmd(["git", "add", "-A"], path)
    run_cmd(["git", "commit", "-q", "-m", message], path)


@pytest.fixture
def git_dvc_repo(tmp_path: Path) -> Path:
    return init_git_dvc(tmp_path / "repo")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a test's own server or a
    process group's rendezvous)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TWO_PROCESSES = """\
compute_environment: LOCAL_MACHINE
distributed_type: MULTI_GPU
num_machines: 1
machine_rank: 0
num_processes: 2
main_process_port: {port}
mixed_precision: "no"
rdzv_backend: static
same_network: true
use_cpu: false
"""
"""An accelerate config for two processes on this machine (gloo on a CPU); format ``port``."""


def dvc_status(root: Path) -> dict:
    """What ``dvc status --json`` prints for the project at ``root``, from DVC's API in this
    process (no start-up cost per call)."""
    from dvc.repo import Repo

    cwd = Path.cwd()
    os.chdir(root)
    try:
        with Repo() as repo:
            return repo.status()
    finally:
        os.chdir(cwd)


def shipped_fsdp_config(port: int) -> str:
    """recipes/accelerate/fsdp.yaml as shipped, for two processes on this machine (on a CPU
    the trainer shards over gloo)."""
    import yaml

    config = yaml.safe_load((REPO / "recipes" / "accelerate" / "fsdp.yaml").read_text())
    config.update(num_processes=2, main_process_port=port)
    config.pop("gpu_ids", None)
    return yaml.safe_dump(config)


def write_spec(folder: Path, **sections: dict) -> Path:
    """params.toml in ``folder``: the tiny recipe with some sections' keys replaced."""
    import tomlkit
    import tomllib

    doc = tomllib.loads((REPO / "recipes" / "tiny.toml").read_text())
    for name, values in sections.items():
        doc.setdefault(name, {}).update(values)
    path = folder / "params.toml"
    path.write_text(tomlkit.dumps(doc))
    return path


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder as the working directory, with a raw clips folder."""
    (tmp_path / "raw").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


BEFORE_TRAIN = ("base", "ingest", "caption", "embed", "latents", "reference", "split")


def prepare_project(root: Path, samples: list[str], stages: tuple[str, ...] = BEFORE_TRAIN,
                    **sections: dict) -> Path:
    """A project in ``root`` with some sample clips, a spec, and ``stages`` already run."""
    import shutil

    from aiprod_recipes.runtime import run_stage

    sample_dir = REPO / "data" / "sample"
    (root / "raw").mkdir(parents=True)
    for name in samples:
        shutil.copy(sample_dir / f"{name}.mp4", root / "raw")
        shutil.copy(sample_dir / f"{name}.txt", root / "raw")
    write_spec(root, **{"data": {"raw_dir": "raw"}, **sections})
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for stage in stages:
            run_stage(stage)
    finally:
        os.chdir(cwd)
    return root


def copy_project(src: Path, dest: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of a prepared project, as the working directory."""
    import shutil

    shutil.copytree(src, dest)
    monkeypatch.chdir(dest)
    return dest
