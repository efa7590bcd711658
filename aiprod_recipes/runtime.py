"""The thin runtime: load the spec, run one stage, make its output atomic, record provenance.

Everything a stage needs arrives through ``StagePaths``; stages never decide paths.
"""

from __future__ import annotations

import importlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiprod_recipes.provenance import package_versions, path_digest, write_provenance
from aiprod_recipes.registry import (
    STAGES_DIR,
    ModelPaths,
    StageDef,
    data_deps,
    get_stage,
    model_paths,
)
from aiprod_recipes.spec import Spec
from aiprod_recipes.specio import DEFAULT_SPEC, load_spec, section_values
from aiprod_recipes.store.atomic import atomic_dir

Report = dict[str, Any]


class StageFailed(RuntimeError):
    """A stage could not produce its output; the message says why, for a person."""


@dataclass(frozen=True)
class StagePaths:
    """The paths one stage run may touch."""

    out: Path
    """Temporary folder the stage writes into; it replaces the real output on success."""
    previous: Path | None
    """The output of the previous run (kept by DVC for persistent outputs), for reuse."""
    raw_dir: Path
    model: ModelPaths
    spec_file: Path = DEFAULT_SPEC
    """The spec this run was started with (passed on to worker processes)."""

    def upstream(self, stage: str) -> Path:
        """The finished output folder of another stage."""
        return STAGES_DIR / stage


class StageModule(Protocol):
    def run(self, spec: Spec, paths: StagePaths) -> Report: ...


def _check_inputs(stage: StageDef, spec: Spec) -> None:
    """Fail before any work when an input is missing, naming it and who makes it."""
    missing = [d for d in data_deps(stage, spec) if not Path(d).exists()]
    if missing:
        hint = ", ".join(missing)
        raise StageFailed(
            f"stage {stage.name}: missing input(s): {hint} "
            "(run the upstream stages first: `dvc repro` runs them in order)"
        )


def _check_rendered(spec: Spec) -> None:
    """dvc.yaml names paths from the spec (raw clips, checkpoint): when the spec moved on
    without a re-render, DVC would track the wrong files, so stop and say how to fix it."""
    from aiprod_recipes import render

    if render.DVC_YAML.exists() and not render.is_current(spec):
        raise StageFailed(f"{render.DVC_YAML} does not match the spec (a path or the model "
                          "source changed): run `aiprod-recipes render`, then `dvc repro`")


def _provenance(stage: StageDef, spec: Spec) -> dict[str, Any]:
    """What produced an output. Run counts (reused, computed) are printed, not recorded: an
    output rebuilt from reused items must be byte-identical to one computed from scratch."""
    record: dict[str, Any] = {
        "stage": stage.name,
        "spec": section_values(spec, stage.sections),
        "packages": package_versions(),
        "inputs": {d: path_digest(Path(d)) for d in data_deps(stage, spec)},
    }
    if stage.uses_model:
        from aiprod_recipes.model.loader import fingerprint

        record["model_fingerprint"] = fingerprint(model_paths(spec).checkpoint)
    return record


def run_stage(name: str, spec_path: Path | str = DEFAULT_SPEC) -> Report:
    """Validate the whole spec, run one stage into a temporary folder, then swap it in."""
    spec = load_spec(spec_path)
    stage = get_stage(name, spec)
    _check_rendered(spec)
    _check_inputs(stage, spec)
    module: StageModule = importlib.import_module(stage.module)  # type: ignore[assignment]
    final = stage.out_dir
    previous = final if final.exists() else None
    started = time.monotonic()
    with atomic_dir(final) as tmp:
        paths = StagePaths(out=tmp, previous=previous, raw_dir=Path(spec.data.raw_dir),
                           model=model_paths(spec), spec_file=Path(spec_path))
        report = module.run(spec, paths)
        write_provenance(tmp, _provenance(stage, spec))
    summary = ", ".join(f"{k}={v}" for k, v in report.items())
    print(f"[{name}] done in {time.monotonic() - started:.1f}s: {summary}", file=sys.stderr)
    return report
