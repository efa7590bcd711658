"""TensorBoard and Weights & Biases beside DVCLive (``train.trackers``), through accelerate's
tracker API (``Accelerator(log_with=...)``, ``init_trackers``, ``log``).

Both are optional extras. A tracker whose package is missing stops the stage before any
work with the command that installs it. Their files go to ``names.TRACKERS_DIR``, which is
neither a DVC output nor in git: event files carry timestamps and host names, and the
stage's outputs must not. W&B honours its own environment (``WANDB_MODE=offline`` runs
without network; ``wandb sync`` uploads later). The run is named after the DVC experiment
(``DVC_EXP_NAME``, set by ``dvc exp run``) or, outside one, after the resume key, so a
resumed run continues its own series.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["EXTRAS", "TrackerUnavailable", "check_available", "flat_config", "project_config",
           "run_name", "start"]

PROJECT = "aiprod-recipes"
"""The W&B project; TensorBoard puts each run under ``tensorboard/<run>/``."""
EXTRAS: dict[str, tuple[tuple[str, ...], str]] = {
    "tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"),
    "wandb": (("wandb",), "wandb"),
}
"""Tracker -> (modules any of which provides it, the package extra that installs it)."""


class TrackerUnavailable(RuntimeError):
    """A tracker the spec asks for is not installed."""


def check_available(trackers: Sequence[str]) -> None:
    """Every tracker's package imports, or one error naming the extras to install."""
    missing = [t for t in trackers
               if not any(importlib.util.find_spec(m) for m in EXTRAS[t][0])]
    if missing:
        extras = ",".join(EXTRAS[t][1] for t in missing)
        raise TrackerUnavailable(
            f"train.trackers = {list(trackers)}: {', '.join(missing)} is not installed; "
            f"pip install 'aiprod-recipes[{extras}]'")


def run_name(resume_key: str) -> str:
    """The DVC experiment's name when ``dvc exp run`` started us, else the resume key's."""
    return os.environ.get("DVC_EXP_NAME") or f"train-{resume_key[:12]}"


def project_config(root: Path, run: str) -> Any:
    """accelerate's project configuration: TensorBoard logs under ``root/tensorboard/run``."""
    from accelerate.utils import ProjectConfiguration

    return ProjectConfiguration(project_dir=str(root),
                                logging_dir=str(Path(root) / "tensorboard" / run))


def flat_config(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested spec values -> ``section/key`` scalars (what TensorBoard's hparams take)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_config(value, f"{name}/"))
        elif isinstance(value, (bool, int, float, str)) or value is None:
            out[name] = value
        else:
            out[name] = json.dumps(value)
    return out


def start(accelerator: Any, root: Path, run: str, config: dict[str, Any]) -> None:
    """Open the Accelerator's trackers (main process only) with the run's settings."""
    if not accelerator.log_with:
        return
    root.mkdir(parents=True, exist_ok=True)
    accelerator.init_trackers(PROJECT, config=flat_config(config),
                              init_kwargs={"wandb": {"name": run, "dir": str(root)}})
