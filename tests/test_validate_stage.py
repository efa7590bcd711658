"""A bad spec never costs an output: ``dvc repro`` and ``dvc exp run`` stop at the validate
stage, with the errors ``aiprod-recipes validate`` lists, before DVC removes anything.

The fast tests check, in process, that the validate stage rejects every malformed spec
below with exactly the command's errors and that DVC's graph puts validate upstream of
every stage; a few run DVC for real on a copy of the pipeline (dvc.lock recorded over
placeholder outputs). The slow test runs ``dvc repro`` once per malformed spec and checks
that the sha256 of every file under data/stages/ is unchanged.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import tomlkit

from aiprod_recipes.cli import main
from aiprod_recipes.names import STAGES_DIR, VALIDATE, resolved_spec_path
from aiprod_recipes.runtime import run_stage
from aiprod_recipes.specio import InvalidSpec, load_spec
from tests.conftest import run_cmd
from tests.e2e_fixtures import dvc, locked_copy, ran_stages, read_lock


def _edit(**changes: Any) -> Callable[[str], bytes]:
    """A malformed spec made from the project's own params.toml: dotted key -> value
    (``None`` deletes the key)."""
    def make(text: str) -> bytes:
        doc = tomlkit.parse(text)
        for dotted, value in changes.items():
            *parents, last = dotted.split(".")
            node: Any = doc
            for part in parents:
                node = node.setdefault(part, tomlkit.table())
            if value is None:
                node.pop(last, None)
            else:
                node[last] = value
        return tomlkit.dumps(doc).encode()
    return make


def _append(extra: str) -> Callable[[str], bytes]:
    return lambda text: (text + extra).encode()


MALFORMED: dict[str, Callable[[str], bytes]] = {
    "rank 0": _edit(**{"lora.rank": 0}),
    "rank 8.0": _edit(**{"lora.rank": 8.0}),
    "unknown section": _append("\n[lorra]\nrank = 8\n"),
    "unknown key": _edit(**{"lora.ranq": 4}),
    "huge steps": _edit(**{"train.steps": 99999999999999999999}),
    "nan logit mean": _edit(**{"flow.logit_mean": float("nan")}),
    "inf cfg scale": _edit(**{"eval.cfg_scale": float("inf")}),
    "tpu device": _edit(**{"model.device": "tpu:7"}),
    "NUL in the trigger word": _edit(**{"caption.trigger_word": "ai\x00prod"}),
    "utf-16 file": lambda text: text.encode("utf-16"),
    "invalid utf-8": lambda text: text.encode() + b"# caf\xe9\n",
    "not toml": _append("\n[lora\n"),
    "frames 48": _edit(**{"video.buckets": [{"width": 32, "height": 32, "frames": 48}]}),
    "max tokens 200": _edit(**{"text_encoder.max_tokens": 200}),
    "unknown strategy": _edit(**{"strategy": {"type": "text_to_image"}}),
    "ic-lora without references": _edit(**{"strategy": {"type": "video_to_video"}}),
    "quantized full fine-tune": _edit(**{"quant.base": "int8", "train.mode": "full"}),
    "raw clips outside": _edit(**{"data.raw_dir": "../clips"}),
    "manifest outside": _edit(**{"caption.backend": {"type": "sidecar",
                                                     "manifest": "../../../caps.csv"}}),
    "checkpoint without a path": _edit(**{"model.source": {"type": "checkpoint",
                                                           "gemma_dir": "g"}}),
    "learning rate 2": _edit(**{"optim.learning_rate": 2.0}),
    "loss level 0": _edit(**{"eval.loss_levels": [0.0]}),
    "all clips held out": _edit(**{"split.val_fraction": 1.0}),
    "section as a string": lambda text: b'data = "data/sample"\n' + text.replace(
        "[data]", "[data_old]").encode(),
    "durations crossed": _edit(**{"ingest.min_duration_s": 5.0,
                                  "ingest.max_duration_s": 1.0}),
    "unknown on_missing": _edit(**{"caption.on_missing": "ignore"}),
}
"""Every kind of bad spec: types, ranges, unknown names, cross-field rules, paths, bytes."""

FAST_DVC_CASES = ("rank 8.0", "unknown section")
"""Run through ``dvc repro`` in the fast suite: the two that used to pass silently."""


@contextmanager
def _cwd(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def _tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under data/stages/, by relative path."""
    base = root / STAGES_DIR
    return {p.relative_to(base).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(base.rglob("*")) if p.is_file()}


def _validate_errors(root: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The error lines ``aiprod-recipes validate`` prints for the project's spec."""
    capsys.readouterr()
    with _cwd(root):
        assert main(["validate"]) == 2
    return [line.strip() for line in capsys.readouterr().err.splitlines() if line.strip()]


def _write(root: Path, case: str, original: str) -> None:
    (root / "params.toml").write_bytes(MALFORMED[case](original))


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy of the pipeline for the module: a rejected spec must leave it untouched,
    and every test puts params.toml back."""
    return locked_copy(tmp_path_factory, tmp_path_factory.mktemp("validate") / "project")


@pytest.fixture
def project(pipeline: Path) -> Iterator[Path]:
    spec = pipeline / "params.toml"
    original = spec.read_bytes()
    yield pipeline
    spec.write_bytes(original)


def test_there_are_enough_malformed_specs() -> None:
    assert len(MALFORMED) >= 20


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_validate_stage_rejects_with_the_commands_errors(project: Path, case: str,
                                                         capsys) -> None:
    original = (project / "params.toml").read_text(encoding="utf-8")
    before = _tree_digest(project)
    _write(project, case, original)
    expected = _validate_errors(project, capsys)
    with _cwd(project), pytest.raises(InvalidSpec) as info:
        run_stage(VALIDATE)
    assert [f"params.toml: {e}" for e in info.value.errors] == expected[1:]
    assert _tree_digest(project) == before


def test_every_stage_is_downstream_of_validate(project: Path) -> None:
    """DVC runs a stage's upstream first, and stops at the first failure."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        graph = repo.index.graph
        stages = {s.name: s for s in graph if s.cmd}
        below = nx.descendants(graph.reverse(), stages[VALIDATE])
        assert {s.name for s in below if s.cmd} == set(stages) - {VALIDATE}
        assert all(out.persist and not out.use_cache for out in stages[VALIDATE].outs)


def _repro_rejects(root: Path, case: str, capsys, command: tuple[str, ...] = ("repro",)
                   ) -> None:
    """Write the malformed spec, run DVC, and check: non-zero exit, the command's errors,
    nothing but validate ran, and not a byte changed under data/stages/ nor in dvc.lock."""
    original = (root / "params.toml").read_text(encoding="utf-8")
    before, lock = _tree_digest(root), read_lock(root)
    _write(root, case, original)
    expected = _validate_errors(root, capsys)
    proc = run_cmd(dvc(*command), root, check=False)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log
    assert ran_stages(log) == {VALIDATE}, log
    for line in expected:
        assert line in log, f"{line!r} not in:\n{log}"
    assert _tree_digest(root) == before
    assert read_lock(root) == lock


@pytest.mark.parametrize("case", FAST_DVC_CASES)
def test_dvc_repro_stops_at_validate(project: Path, case: str, capsys) -> None:
    _repro_rejects(project, case, capsys)


def test_dvc_exp_run_stops_at_validate(project: Path, capsys) -> None:
    """``dvc exp run -S`` writes the value into params.toml, then reproduces."""
    before, lock = _tree_digest(project), read_lock(project)
    proc = run_cmd(dvc("exp", "run", "-S", "params.toml:lora.rank=0"), project, check=False)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log
    assert ran_stages(log) == {VALIDATE}, log
    assert "lora.rank: expected `int` >= 1 (got 0)" in log
    assert _tree_digest(project) == before
    assert read_lock(project) == lock


def test_left_out_sections_and_written_defaults_rerun_nothing(project: Path) -> None:
    """A section left out of params.toml and a default written out are the same resolved
    value: only validate runs (DVC never reports a missing param), and the resolved spec,
    every output and every other stage's lock entry stay as they were."""
    text = (project / "params.toml").read_text(encoding="utf-8")
    doc = tomlkit.parse(text)
    for section in ("flow", "quant"):  # the tiny recipe writes only their defaults
        assert section in doc
        del doc[section]
    doc["eval"]["negative_prompt"] = ""
    doc["lora"]["dropout"] = 0.0
    (project / "params.toml").write_text(tomlkit.dumps(doc), encoding="utf-8")
    before, lock = _tree_digest(project), read_lock(project)
    proc = run_cmd(dvc("repro"), project)
    assert ran_stages(proc.stdout + proc.stderr) == {VALIDATE}
    assert _tree_digest(project) == before
    after = read_lock(project)
    assert {k: v for k, v in after.items() if k != VALIDATE} == {
        k: v for k, v in lock.items() if k != VALIDATE}
    status = run_cmd(dvc("status"), project)
    assert "missing" not in status.stdout + status.stderr
    assert "up to date" in status.stdout


def test_stage_refuses_a_stale_resolved_spec(project: Path) -> None:
    """``dvc repro -s train`` skips validate: the stage stops rather than let dvc.lock record
    params it did not run with."""
    from aiprod_recipes.runtime import StageFailed

    text = (project / "params.toml").read_text(encoding="utf-8")
    (project / "params.toml").write_bytes(_edit(**{"lora.rank": 4})(text))
    with _cwd(project), pytest.raises(StageFailed, match="run `dvc repro`"):
        run_stage("train")
    assert re.search(r'"rank": 8', (project / resolved_spec_path()).read_text())


def test_a_current_resolved_spec_lets_every_stage_start(project: Path) -> None:
    """The check compares exactly the declared sections and keys (``reference.downscale``
    for evaluate), so a current file never stops a stage."""
    from aiprod_recipes.registry import stages_for
    from aiprod_recipes.runtime import _check_resolved

    with _cwd(project):
        spec = load_spec("params.toml")
        for stage in stages_for(spec):
            _check_resolved(stage, spec)


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(set(MALFORMED) - set(FAST_DVC_CASES)))
def test_dvc_repro_rejects_every_malformed_spec(project: Path, case: str, capsys) -> None:
    _repro_rejects(project, case, capsys)


def test_spec_file_is_checked_as_bytes(project: Path) -> None:
    """DVC hashes params.toml and never parses it, so even a file that is not TOML reaches
    the validate stage (DVC's own parser would fail first, with its own message)."""
    assert load_spec(project / "params.toml").lora.rank == 8
    lock = read_lock(project)
    assert "params" not in lock[VALIDATE]
    assert "params.toml" in {d["path"] for d in lock[VALIDATE]["deps"]}
    assert not any(p == "params.toml" for entry in lock.values()
                   for params in [entry.get("params", {})] for p in params)
