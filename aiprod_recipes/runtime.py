"""The thin runtime: load the spec, run one stage, make its output atomic, record provenance.

Everything a stage needs arrives through ``StagePaths`` (built here from the registry);
stages never decide paths. A stage given an accelerate config (``launch_config``) runs as
several processes (``launch_workers``): each runs the stage's ``run`` with the same paths
and its share of the items (per-item stages write their share as a part under the output,
which the main process merges; training writes from the main process only), and the output
is finished here as for a single process. On the
other machines of a multi-machine config the stage only joins those processes
(``join_workers``): it leaves every output alone.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Protocol

from aiprod_recipes.dvc_bare_params import stray_params_yaml
from aiprod_recipes.model.runtime import model_fingerprint, model_paths
from aiprod_recipes.names import ACCELERATE_CONFIG_ENV, SPEC_FILE, resolved_spec_path, stage_dir
from aiprod_recipes.provenance import stage_record, write_provenance
from aiprod_recipes.registry import StageDef, data_deps, get_stage, stage_code_digest
from aiprod_recipes.spec import Spec
from aiprod_recipes.specio import load_spec, pick, section_values
from aiprod_recipes.stages.context import Report, StageFailed, StagePaths
from aiprod_recipes.store.atomic import atomic_dir
from aiprod_recipes.store.parts import Share

WORKER_REPORT = ".worker-report.json"
"""Where the main worker leaves the stage's report for the launching process."""


class StageModule(Protocol):
    def run(self, spec: Spec, paths: StagePaths) -> Report: ...


def stage_paths(stage: StageDef, spec: Spec, out: Path, previous: Path | None,
                spec_file: Path | str = SPEC_FILE, share: Share | None = None) -> StagePaths:
    """The paths and declarations a stage run gets, from the registry (and, in one of
    several processes, that process's share of the items)."""
    return StagePaths(out=out, previous=previous, raw_dir=Path(spec.data.raw_dir),
                      model=model_paths(spec), final=stage.out_dir, spec_file=Path(spec_file),
                      sections=stage.params(spec),
                      upstreams={up: stage_dir(up) for up in stage.reads()},
                      code_digest=stage_code_digest(stage), share=share or Share())


def _check_inputs(stage: StageDef, spec: Spec) -> None:
    """Fail before any work when an input is missing, naming it and who makes it."""
    missing = [d for d in data_deps(stage, spec) if not Path(d).exists()]
    if missing:
        hint = ", ".join(missing)
        raise StageFailed(
            f"stage {stage.name}: missing input(s): {hint} "
            "(run the upstream stages first: `dvc repro` runs them in order)"
        )


def _check_rendered(stage: StageDef, spec: Spec) -> None:
    """dvc.yaml names paths from the spec (raw clips, checkpoint, lora.init_from) and params
    that depend on a switch (eval.every_steps): when the spec moved on without a re-render,
    DVC would track the wrong inputs, so stop and say how to fix it. The validate stage,
    which ``dvc repro`` runs before any other, checks the whole file (DVC has then removed
    no output yet); every other stage checks its own entry, which is quicker than rendering
    every stage's code dependencies at each start."""
    from aiprod_recipes import render

    current = (render.is_current(spec) if stage.reads_spec_file
               else render.stage_is_current(stage, spec))
    if render.DVC_YAML.exists() and not current:
        raise StageFailed(f"{render.DVC_YAML} does not match the spec (a path, the model "
                          "source, lora.init_from or eval.every_steps on/off changed): run "
                          "`aiprod-recipes render`, then `dvc repro`")


def _check_resolved(stage: StageDef, spec: Spec) -> None:
    """DVC records a stage's params from the resolved spec the validate stage wrote; the
    stage runs with the spec file. When they disagree (DVC was told to skip validate:
    ``dvc repro -s``, ``--downstream``), dvc.lock would record values the run did not use,
    so stop and say how to fix it. Without the file (a stage run outside DVC) there is
    nothing to disagree with."""
    path = resolved_spec_path()
    if stage.reads_spec_file or not path.is_file():
        return
    try:
        recorded = pick(json.loads(path.read_text(encoding="utf-8")), stage.params(spec))
    except (ValueError, KeyError, TypeError):
        recorded = None
    if recorded != section_values(spec, stage.params(spec)):
        raise StageFailed(f"{path} does not match the spec for stage {stage.name}: run "
                          "`dvc repro` (its validate stage resolves the spec first), or "
                          "`aiprod-recipes run validate`")


def _provenance(stage: StageDef, spec: Spec) -> dict[str, Any]:
    """What produced an output (see ``provenance.stage_record``)."""
    fingerprint = model_fingerprint(model_paths(spec)) if stage.uses_model else None
    return stage_record(stage.name, spec, stage.params(spec), data_deps(stage, spec),
                        fingerprint)


def stage_module(stage: StageDef) -> StageModule:
    """The stage's module (imported only when the stage runs)."""
    return importlib.import_module(stage.module)  # type: ignore[return-value]


def launch_config(stage: StageDef, spec: Spec) -> str:
    """The accelerate config a run of ``stage`` uses; empty: one process, this one.

    Training reads it from its spec (``train.accelerate_config``): the process count shapes
    what it learns. A per-item stage (``StageDef.item_parallel``) reads it from the
    environment variable ``AIPROD_ACCELERATE_CONFIG``: its output is the same bytes for any
    process count, so the count is no param, and DVC, which never sees the variable, does
    not rerun the stage when it changes.
    """
    if stage.accelerate_config is not None:
        return stage.accelerate_config(spec)
    if stage.item_parallel:
        return os.environ.get(ACCELERATE_CONFIG_ENV, "")
    return ""


def machine_rank(config: str) -> int:
    """The ``machine_rank`` an accelerate config gives this machine (0: the main one)."""
    import yaml

    try:
        data = yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}
        return int(data.get("machine_rank", 0) or 0)
    except (OSError, ValueError, TypeError, AttributeError, yaml.YAMLError) as e:
        raise StageFailed(f"accelerate config {config}: cannot read machine_rank ({e})") from e


def _launch(stage: StageDef, config: str, out: str, spec_file: str, previous: str) -> int:
    """``accelerate launch`` the stage's workers; their exit status."""
    if not Path(config).is_file():
        raise StageFailed(f"{stage.name}: accelerate config {config} does not exist")
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--config_file", config, "-m", "aiprod_recipes.worker",
           stage.name, out, spec_file, previous]
    return subprocess.run(cmd).returncode


def launch_workers(stage: StageDef, config: str, paths: StagePaths) -> Report:
    """Run the stage's work in every process of ``config`` (``accelerate launch``).

    Each worker (``aiprod_recipes.worker``) rebuilds the same ``StagePaths`` and calls the
    stage's ``run``; the processes share the work (a per-item stage through
    ``StagePaths.share``, training through accelerate), and only the main process writes
    into ``paths.out``. Its report comes back through a file.
    """
    code = _launch(stage, config, str(paths.out), str(paths.spec_file),
                   str(paths.previous or ""))
    report_path = paths.out / WORKER_REPORT
    if code != 0 or not report_path.exists():
        raise StageFailed(f"{stage.name}: accelerate workers ({config}) exited with {code}")
    report = json.loads(report_path.read_text())
    report_path.unlink()
    return report


def join_workers(stage: StageDef, config: str, spec_file: Path | str) -> Report:
    """On a machine other than the main one: start this machine's workers of a
    multi-machine run and wait for them. The main machine's workers tell them where the
    output is being written (the project must sit on a file system all machines share);
    outputs and provenance are the main machine's business."""
    code = _launch(stage, config, "", str(spec_file), "")
    if code != 0:
        raise StageFailed(f"{stage.name}: accelerate workers ({config}) exited with {code}")
    return {"joined": True, "machine_rank": machine_rank(config)}


def write_worker_report(out: Path, report: Report) -> None:
    """Called by the main worker: hand the stage's report to the launching process."""
    (out / WORKER_REPORT).write_text(json.dumps(report))


def run_stage(name: str, spec_path: Path | str = SPEC_FILE) -> Report:
    """Validate the whole spec, run one stage into a temporary folder, then swap it in."""
    if (stray := stray_params_yaml(Path(spec_path))) is not None:
        raise StageFailed(stray)
    spec = load_spec(spec_path)
    stage = get_stage(name, spec)
    _check_rendered(stage, spec)
    _check_resolved(stage, spec)
    _check_inputs(stage, spec)
    config = launch_config(stage, spec)
    if config and machine_rank(config) > 0:
        report = join_workers(stage, config, spec_path)
        print(f"[{name}] this machine's workers are done (the main machine writes the output)",
              file=sys.stderr)
        return report
    final = stage.out_dir
    previous = final if final.exists() else None
    started = time.monotonic()
    with atomic_dir(final) as tmp:
        paths = stage_paths(stage, spec, tmp, previous, spec_path)
        if config:
            report = launch_workers(stage, config, paths)
        else:
            report = stage_module(stage).run(spec, paths)
        if stage.provenance:
            write_provenance(tmp, _provenance(stage, spec))
    summary = ", ".join(f"{k}={v}" for k, v in report.items())
    print(f"[{name}] done in {time.monotonic() - started:.1f}s: {summary}", file=sys.stderr)
    return report
