"""The train stage: adapter + DVCLive output, kill and resume to identical bytes, fresh start
when params change."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from aiprod_recipes.names import ADAPTER_FILE as ADAPTER
from aiprod_recipes.names import TRAIN_CHECKPOINTS_DIR
from aiprod_recipes.runtime import run_stage
from tests.conftest import (
    BIN,
    copy_project,
    prepare_project,
    shipped_fsdp_config,
    write_spec,
)

TRAIN = Path("data/stages/train")
SPEC = {
    "video": {"buckets": [{"width": 32, "height": 32, "frames": 9}]},
    "train": {"steps": 18, "checkpoint_every": 3, "log_every": 2},
    "split": {"val_fraction": 0.3, "seed": 0},
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with every stage before train done, shared by the tests (copied each time)."""
    return prepare_project(tmp_path_factory.mktemp("prepared"), ["pulse", "sunrise", "orbits"],
                           **SPEC)


@pytest.fixture
def copy(prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return copy_project(prepared, tmp_path / "project", monkeypatch)


def test_adapter_and_metrics(copy: Path) -> None:
    report = run_stage("train")
    assert report["steps"] == 18 and not report["resumed"]
    assert (TRAIN / ADAPTER).stat().st_size > 0
    metrics = json.loads((TRAIN / "live" / "metrics.json").read_text())
    assert metrics["step"] == 18 and "loss" in metrics["train"]
    rows = (TRAIN / "live" / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()
    steps = [int(line.split("\t")[0]) for line in rows[1:]]
    assert steps == list(range(2, 19, 2))
    assert not TRAIN_CHECKPOINTS_DIR.exists() or not any(TRAIN_CHECKPOINTS_DIR.iterdir())


def _kill_after_a_checkpoint(project: Path) -> None:
    """Start the train stage in its own process and SIGKILL it once a checkpoint exists."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen([str(BIN / "aiprod-recipes"), "run", "train"], cwd=project, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(6000):
            if list((project / TRAIN_CHECKPOINTS_DIR).glob("*/current/state.json")):
                break
            if proc.poll() is not None:
                pytest.fail("the train stage ended before it could be killed")
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
@pytest.mark.slow
def test_killed_run_resumes_to_identical_bytes(copy: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    shutil.copytree(copy, reference)
    _kill_after_a_checkpoint(copy)
    assert not TRAIN.exists(), "a killed stage must leave no output"
    report = run_stage("train")
    assert report["resumed"] and report["steps"] == 18
    os.chdir(reference)
    run_stage("train")
    assert (copy / TRAIN / ADAPTER).read_bytes() == (reference / TRAIN / ADAPTER).read_bytes()
    for path in (reference / TRAIN / "live").rglob("*.tsv"):
        assert path.read_text() == (copy / TRAIN / "live" / path.relative_to(
            reference / TRAIN / "live")).read_text()


@pytest.mark.slow
def test_other_params_start_fresh(copy: Path) -> None:
    _kill_after_a_checkpoint(copy)
    write_spec(copy, data={"raw_dir": "raw"}, **{**SPEC, "optim": {"learning_rate": 5e-3}})
    report = run_stage("train")
    assert not report["resumed"] and report["steps"] == 18


DDP_CPU = """\
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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_ddp_on_cpu(copy: Path) -> None:
    """Two gloo processes through accelerate; only the main one writes the outputs."""
    (copy / "ddp.yaml").write_text(DDP_CPU.format(port=_free_port()))
    write_spec(copy, data={"raw_dir": "raw"},
               **{**SPEC, "train": {**SPEC["train"], "accelerate_config": "ddp.yaml"}})
    report = run_stage("train")
    assert report["processes"] == 2 and report["steps"] == 18
    assert (TRAIN / ADAPTER).stat().st_size > 0
    assert json.loads((TRAIN / "live" / "metrics.json").read_text())["step"] == 18
    assert not (TRAIN / ".train-report.json").exists()


def _train_under(project: Path, config: str, mode: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    port = _free_port()
    (project / "acc.yaml").write_text(shipped_fsdp_config(port) if config == "fsdp"
                                      else config.format(port=port))
    write_spec(project, data={"raw_dir": "raw"},
               **{**SPEC, "train": {**SPEC["train"], "steps": 4, "mode": mode,
                                    "accelerate_config": "acc.yaml"}})
    report = run_stage("train")
    assert report["processes"] == 2 and report["steps"] == 4
    return load_file(str(TRAIN / report["output"]))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["lora", "full"])
def test_two_process_fsdp_saves_what_ddp_saves(copy: Path, mode: str) -> None:
    """Sharded weights (and the checkpoints written every 3 steps) are gathered in full:
    the saved file equals the DDP run's within rounding."""
    ddp = _train_under(copy, DDP_CPU, mode)
    fsdp = _train_under(copy, "fsdp", mode)
    assert fsdp.keys() == ddp.keys()
    for key, value in ddp.items():
        assert fsdp[key].shape == value.shape, key
        assert torch.allclose(fsdp[key].float(), value.float(), rtol=1e-3, atol=1e-5), key


def test_full_fine_tune_is_trained_and_evaluated(copy: Path) -> None:
    from aiprod_recipes.names import FULL_WEIGHTS_FILE as FULL_WEIGHTS

    write_spec(copy, data={"raw_dir": "raw"},
               **{**SPEC, "train": {**SPEC["train"], "mode": "full", "steps": 4},
                  "eval": {"max_samples": 0}})
    assert run_stage("train")["output"] == FULL_WEIGHTS
    report = run_stage("evaluate")
    metrics = json.loads(Path("data/stages/evaluate/metrics.json").read_text())
    assert metrics["num_val_clips"] >= 1 and report["samples"] == 0
    assert metrics["loss_adapter"] != metrics["loss_base"]
