"""dvc.yaml (and the Makefile's stage targets), rendered from the stage registry and the spec.

The spec takes part because some dependencies are paths it names (the raw clips folder, a
real checkpoint); the registry says everything else. Comparison is on parsed YAML, so
formatting never makes the file look stale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from aiprod_recipes import makefile
from aiprod_recipes.names import resolved_spec_path
from aiprod_recipes.registry import StageDef, stage_deps, stages_for
from aiprod_recipes.spec import Spec
from aiprod_recipes.specio import resolved_text

DVC_YAML = Path("dvc.yaml")
HEADER = (
    "# Rendered from the stage registry (aiprod_recipes/registry.py) and params.toml by\n"
    "# `aiprod-recipes render`. Do not edit: change the registry or the spec and re-render.\n"
)


def _outs(stage: StageDef) -> dict[str, list[Any]]:
    """Outputs grouped by how dvc.yaml declares them (outs, metrics, plots)."""
    grouped: dict[str, list[Any]] = {}
    for out in stage.outputs():
        options = {**({"persist": True} if out.persist else {}),
                   **({} if out.cache else {"cache": False})}
        entry: Any = {out.path: options} if options else out.path
        grouped.setdefault(out.kind, []).append(entry)
    return grouped


def render_stage(stage: StageDef, spec: Spec) -> dict[str, Any]:
    """One dvc.yaml stage entry. A stage's params are the sections (or keys) it reads, from
    the resolved spec the validate stage writes (validate itself depends on the spec file),
    so dvc.lock records every value a stage reads, defaults included."""
    params = ({} if stage.reads_spec_file
              else {"params": [{resolved_spec_path().as_posix(): list(stage.params(spec))}]})
    return {
        "cmd": f"aiprod-recipes run {stage.name}",
        "deps": stage_deps(stage, spec),
        **params,
        **_outs(stage),
    }


def render(spec: Spec) -> dict[str, Any]:
    """The whole dvc.yaml document for a spec; metrics and plots are declared top-level so
    that they may live inside a stage's output folder."""
    stages = stages_for(spec)
    doc: dict[str, Any] = {"stages": {s.name: render_stage(s, spec) for s in stages}}
    metrics = [m for s in stages for m in s.metrics]
    plots: list[Any] = [{p: {"x": "step"}} for s in stages for p in s.plots]
    plots += [p for s in stages for p in (s.images(spec) if s.images else ())]
    if metrics:
        doc["metrics"] = metrics
    if plots:
        doc["plots"] = plots
    return doc


def render_text(spec: Spec) -> str:
    return HEADER + yaml.safe_dump(render(spec), sort_keys=False, width=100)


def _load(path: Path) -> Any:
    """A YAML file parsed with libyaml where PyYAML has it (several times faster)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(path.read_text(encoding="utf-8"), Loader=loader)


def is_current(spec: Spec, path: Path = DVC_YAML) -> bool:
    """True when the file on disk parses to exactly what the registry renders."""
    if not path.exists():
        return False
    return _load(path) == render(spec)


def stage_is_current(stage: StageDef, spec: Spec, path: Path = DVC_YAML) -> bool:
    """True when the file's entry for one stage is what the registry renders for it: what a
    stage checks before it runs (rendering every stage's code dependencies would parse the
    whole package at each stage's start)."""
    if not path.exists():
        return False
    stages = (_load(path) or {}).get("stages") or {}
    return stages.get(stage.name) == render_stage(stage, spec)


def write_resolved(spec: Spec, root: Path = Path()) -> Path:
    """The resolved spec the validate stage writes, written now: a project that has just
    been initialised or re-rendered then shows DVC every stage's params (``dvc status``)
    before its first run. The validate stage rewrites the same bytes."""
    path = root / resolved_spec_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(resolved_text(spec), encoding="utf-8")
    return path


def write(spec: Spec, path: Path = DVC_YAML) -> list[Path]:
    """Write dvc.yaml, the resolved spec beside it, and the Makefile's stage targets when it
    has the block; returns the files written."""
    path.write_text(render_text(spec), encoding="utf-8")
    written = [path, write_resolved(spec, path.parent)]
    if makefile.write(stages_for(spec)):
        written.append(makefile.MAKEFILE)
    return written


def stale(spec: Spec) -> list[Path]:
    """The rendered files that differ from what the registry and the spec give."""
    out = [] if is_current(spec) else [DVC_YAML]
    if not makefile.is_current(stages_for(spec)):
        out.append(makefile.MAKEFILE)
    return out
