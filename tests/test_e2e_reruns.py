"""A params change reruns exactly the stages it affects, in a real DVC repository.

For every section of the spec, one key is changed in a copy of the pipeline. ``dvc
status`` first reports only the validate stage (it depends on params.toml itself); once
validate has written the resolved spec, it reports exactly the stages that declare that
section (the registry's ``StageDef.sections``), for no other reason than their resolved
params. For a few sections ``dvc repro`` runs for real: the stages that run must be
validate, the readers, and the downstream stages whose recorded inputs changed, and nothing
upstream.

Stages come from the registry, so new stages are covered as they are registered.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from aiprod_recipes.names import SPEC_FILE, VALIDATE, resolved_spec_path
from aiprod_recipes.runtime import run_stage
from aiprod_recipes.spec import SECTIONS
from aiprod_recipes.specio import load_spec
from tests.conftest import dvc_status, run_cmd
from tests.e2e_fixtures import (
    changed_inputs,
    downstream,
    dvc,
    out_hashes,
    project_spec,
    project_stages,
    ran_stages,
    read_lock,
    readers,
    set_param,
)

CHANGES: dict[str, tuple[str, Any]] = {
    "data": ("data.extensions", [".mp4", ".mov"]),
    "ingest": ("ingest.strict", True),
    "caption": ("caption.trigger_word", "aiprodx"),
    "model": ("model.device", "auto"),
    "text_encoder": ("text_encoder.max_tokens", 256),
    "video": ("video.seed", 1),
    "audio": ("audio.on_missing", "skip"),
    "reference": ("reference.canny_low", 50),
    "split": ("split.seed", 5),
    "strategy": ("strategy.independent_audio_timestep", False),
    "lora": ("lora.rank", 4),
    "optim": ("optim.learning_rate", 1e-3),
    "train": ("train.seed", 7),
    "flow": ("flow.logit_std", 0.5),
    "quant": ("quant.base", "int8"),
    "memory": ("memory.blocks_to_swap", 1),
    "eval": ("eval.seed", 1),
}
"""One valid, cheap change per spec section."""

REPRO_CASES = ("split", "lora", "caption", "ingest")
"""Sections whose change is run through ``dvc repro`` on a built copy."""


def _status(root: Path) -> dict[str, Any]:
    """``dvc status --json``, parsed."""
    proc = run_cmd(dvc("status", "--json"), root)
    return json.loads(proc.stdout or "{}")


def _change(root: Path, section: str) -> None:
    key, value = CHANGES[section]
    set_param(root, key, value)
    load_spec(root / "params.toml")


def _resolve(root: Path) -> None:
    """What ``dvc repro`` runs first: the validate stage, which writes the resolved spec."""
    cwd = Path.cwd()
    os.chdir(root)
    try:
        run_stage(VALIDATE)
    finally:
        os.chdir(cwd)


def test_every_section_has_a_change() -> None:
    assert set(CHANGES) == set(SECTIONS)






def test_copy_starts_clean(project_copy: Path) -> None:
    assert _status(project_copy) == {}


def test_status_api_matches_the_command(project_copy: Path) -> None:
    _change(project_copy, "model")
    assert dvc_status(project_copy) == _status(project_copy) != {}


@pytest.mark.parametrize("section", SECTIONS)
def test_status_reports_exactly_the_readers(project_copy: Path, section: str) -> None:
    expected = readers(project_stages(project_copy), CHANGES[section][0])
    _change(project_copy, section)
    assert set(dvc_status(project_copy)) == {VALIDATE}
    _resolve(project_copy)
    status = dvc_status(project_copy)
    assert set(status) == expected
    assert {"changed deps": {SPEC_FILE: "modified"}} in status[VALIDATE]
    resolved = resolved_spec_path().as_posix()
    for stage in expected - {VALIDATE}:
        assert status[stage] == [{"changed deps": {resolved: {section: "modified"}}}]


def _repro(root: Path, *args: str) -> tuple[set[str], str, dict[str, Any]]:
    """Run ``dvc repro``: the stages it ran, its output, and dvc.lock from before."""
    before = read_lock(root)
    proc = run_cmd(dvc("repro", *args), root)
    log = proc.stdout + proc.stderr
    return ran_stages(log), log, before


def _check_minimal(root: Path, ran: set[str], before: dict[str, Any],
                   direct: set[str]) -> None:
    """``direct`` ran, and everything else that ran is downstream of it and had an input
    whose recorded hash changed. (A stage with a changed input that did not run shows up
    in the ``dvc status`` that follows.)"""
    spec, stages = project_spec(root), project_stages(root)
    after = read_lock(root)
    below = downstream(direct, spec, stages)
    assert direct <= ran
    assert ran <= direct | below, f"ran upstream or unrelated stages: {ran - direct - below}"
    moved = {s.name for s in stages if s.name in below and changed_inputs(before, after, s.name)}
    assert ran - direct == moved


@pytest.mark.slow
@pytest.mark.parametrize("section", REPRO_CASES)
def test_repro_runs_readers_and_changed_downstream(built_project: Path, section: str) -> None:
    stages = project_stages(built_project)
    direct = readers(stages, CHANGES[section][0])
    _change(built_project, section)
    ran, _log, before = _repro(built_project)
    _check_minimal(built_project, ran, before, direct)
    if direct == {VALIDATE}:
        assert ran == {VALIDATE}
    if section == "caption":
        names = {s.name for s in stages}
        assert out_hashes(before, "caption") != out_hashes(read_lock(built_project), "caption")
        assert "embed" in ran or "embed" not in names, "new captions must be re-embedded"
    assert _status(built_project) == {}


@pytest.mark.slow
def test_identical_output_skips_downstream(built_project: Path) -> None:
    """A stage whose code changed but whose output did not: it reruns, DVC sees the same
    output hash, and nothing downstream runs. The edited module is one that only its own
    stage imports (code dependencies follow the import graph: editing split.py, which
    train and evaluate import, reruns them too)."""
    from aiprod_recipes.registry import code_deps

    stages = project_stages(built_project)
    edited = "aiprod_recipes/stages/embed.py"
    assert [s.name for s in stages if edited in code_deps(s)] == ["embed"]
    module = built_project / edited
    module.write_text(module.read_text(encoding="utf-8") + "\n# same behaviour\n",
                      encoding="utf-8")
    ran, log, before = _repro(built_project)
    assert ran == {"embed"}
    assert out_hashes(before, "embed") == out_hashes(read_lock(built_project), "embed")
    spec = project_spec(built_project)
    for name in downstream({"embed"}, spec, stages):
        assert f"Stage '{name}' didn't change, skipping" in log


@pytest.mark.slow
def test_policy_change_stops_where_outputs_are_identical(built_project: Path) -> None:
    """``ingest.strict`` changes no clip: ingest reuses every clip, the stages reading its
    folder rerun and reuse everything, and the cascade stops there (train does not run)."""
    set_param(built_project, "ingest.strict", True)
    ran, _log, before = _repro(built_project)
    after = read_lock(built_project)
    assert "ingest" in ran
    assert {"embed", "split", "train"}.isdisjoint(ran), ran
    for stage in ran - {VALIDATE, "ingest", "evaluate"}:
        assert out_hashes(before, stage) == out_hashes(after, stage), stage
    assert _status(built_project) == {}
