"""Multi-process training through accelerate (DDP, FSDP), driven from one stage command.

``aiprod-recipes run train`` stays the stage command in dvc.yaml. When the spec names an
accelerate config, the stage re-launches itself under ``accelerate launch`` as workers that
all train (each on its own share of the batches) while only the main one writes into the
stage's temporary output folder; the stage then finishes as usual (atomic swap,
provenance). The worker's report travels back in a small JSON file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from aiprod_recipes.training.objective import Generators

WORKER_ENV = "AIPROD_TRAIN_WORKER"
REPORT = ".train-report.json"


class LaunchFailed(RuntimeError):
    """The accelerate workers did not finish."""


def is_worker() -> bool:
    """True inside a process started by ``launch``."""
    return os.environ.get(WORKER_ENV) == "1"


def launch(config: str, out: Path, spec_file: str) -> dict:
    """Run the train stage's workers under ``accelerate launch --config_file config``."""
    if not Path(config).is_file():
        raise LaunchFailed(f"train.accelerate_config: {config} does not exist")
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--config_file", config, "-m",
           "aiprod_recipes.training.worker", str(out), spec_file]
    env = {**os.environ, WORKER_ENV: "1"}
    proc = subprocess.run(cmd, env=env)
    report_path = out / REPORT
    if proc.returncode != 0 or not report_path.exists():
        raise LaunchFailed(f"train: accelerate workers exited with {proc.returncode} "
                           f"({' '.join(cmd)})")
    report = json.loads(report_path.read_text())
    report_path.unlink()
    return report


def write_report(out: Path, report: dict) -> None:
    (out / REPORT).write_text(json.dumps(report))


def decorrelate(generators: Generators, rank: int, step: int) -> None:
    """Give every worker but the main one its own noise: the same seed everywhere would
    make all workers draw the same noise levels and noise for different clips."""
    if rank == 0:
        return
    for offset, g in enumerate(generators.as_dict().values()):
        g.manual_seed(int(torch.randint(0, 2**31, (1,), generator=g).item())
                      + 7919 * rank + 104_729 * step + offset)
