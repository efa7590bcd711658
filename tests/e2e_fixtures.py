"""Throw-away copies of this project's pipeline for end-to-end DVC tests.

A copy is a fresh git + DVC repository holding only what the pipeline needs: the package
folder (its files are code dependencies of the stages, by repo-relative path), a few sample
clips tracked with ``dvc add`` (as a user's raw clips are), a params.toml shrunk for speed,
and a dvc.yaml rendered from the stage registry. Stage commands run the installed
package, so the copy and the working tree share the code that runs.

Two kinds of copy:

- *built*: ``dvc repro`` has run every registered stage for real (about a minute).
- *locked*: every stage output is a small placeholder recorded with ``dvc commit``, so
  dvc.lock holds the real deps and params of every stage without running anything. It is
  what tests of DVC's bookkeeping (status, push, pull) need, in a few seconds.

Each kind is built once per test session (once across pytest-xdist workers, under a file
lock) and copied, caches included, for every test that changes it.

``built_copy`` and ``locked_copy`` give a test its private copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import tomlkit
import yaml
from filelock import FileLock

from aiprod_recipes import render
from aiprod_recipes.registry import StageDef, data_deps, stages_for
from aiprod_recipes.spec import Spec
from aiprod_recipes.specio import load_spec
from tests.conftest import BIN, REPO, git_commit, init_git_dvc, run_cmd, write_spec

SAMPLE_CLIPS = 3
"""How many of data/sample's clips (with their sidecar captions) a copy holds."""
RAW_DIR = "data/sample"
BUCKET = {"width": 32, "height": 32, "frames": 9}
SPEC_OVERRIDES: dict[str, dict[str, Any]] = {
    "data": {"raw_dir": RAW_DIR},
    "video": {"buckets": [BUCKET]},
    "train": {"steps": 2, "checkpoint_every": 0, "log_every": 1},
    "eval": {"max_samples": 1, "steps": 2, "bucket": BUCKET},
}
"""The tiny recipe, smaller: one 32x32x9 bucket, two training steps, one short sample."""
BUILD_TIMEOUT_S = 900

_RUNNING = re.compile(r"Running stage '([^']+)'")


def dvc(*args: str) -> list[str]:
    """A command line for the environment's DVC."""
    return [str(BIN / "dvc"), *args]


# --------------------------------------------------------------------------- building

def _copy_sample(dest: Path, count: int) -> None:
    """The first ``count`` sample clips by name, with every file sharing their stem."""
    src = REPO / "data" / "sample"
    stems = sorted(p.stem for p in src.glob("*.mp4"))[:count]
    dest.mkdir(parents=True)
    for p in sorted(src.iterdir()):
        if p.is_file() and p.stem in stems:
            shutil.copy2(p, dest / p.name)


def _placeholder_outputs(root: Path, spec: Spec) -> None:
    """A small file in every stage output (a folder, or a file when the path has a suffix),
    and every single file another stage depends on, so that ``dvc commit`` can record
    each stage."""
    stages = stages_for(spec)
    for stage in stages:
        for out in stage.outputs():
            path = root / out.path
            if path.exists():  # written already (the resolved spec, by render)
                continue
            if path.suffix:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("{}\n" if path.suffix == ".json" else f"{stage.name}\n")
            else:
                path.mkdir(parents=True, exist_ok=True)
                (path / "placeholder.txt").write_text(f"{stage.name}\n")
    for stage in stages:
        for dep in data_deps(stage, spec):
            path = root / dep
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(f"placeholder for {dep}\n")


def make_project(dest: Path, *, run: bool) -> Path:
    """A git + DVC copy of the pipeline in ``dest``, committed, with every stage recorded in
    dvc.lock: by running ``dvc repro`` (``run``) or by ``dvc commit`` over placeholders."""
    init_git_dvc(dest)
    shutil.copytree(REPO / "aiprod_recipes", dest / "aiprod_recipes",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in (".gitignore", ".dvcignore"):
        shutil.copy2(REPO / name, dest / name)
    _copy_sample(dest / RAW_DIR, SAMPLE_CLIPS)
    write_spec(dest, **SPEC_OVERRIDES)
    spec = load_spec(dest / "params.toml")
    render.write(spec, dest / "dvc.yaml")
    run_cmd(dvc("add", "-q", RAW_DIR), dest)
    git_commit(dest, "pipeline and raw clips")
    if run:
        run_cmd(dvc("repro"), dest)
    else:
        _placeholder_outputs(dest, spec)
        run_cmd(dvc("commit", "-f", "-q"), dest)
    git_commit(dest, "stage outputs")
    return dest


def copy_project(src: Path, dest: Path) -> Path:
    """A private copy of a finished project, git history and DVC cache included."""
    shutil.copytree(src, dest, symlinks=True,
                    ignore=lambda d, names: ["tmp"] if Path(d).name == ".dvc" else [])
    return dest


def _shared_root(factory: pytest.TempPathFactory) -> Path:
    """A folder all xdist workers of this session share (the session's base temp)."""
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def shared_project(factory: pytest.TempPathFactory, name: str, *, run: bool) -> Path:
    """A project built once per session (across xdist workers): treat it as read-only."""
    root = _shared_root(factory)
    done = root / name
    with FileLock(str(root / f"{name}.lock"), timeout=BUILD_TIMEOUT_S):
        if not done.is_dir():
            building = root / f"{name}.building"
            shutil.rmtree(building, ignore_errors=True)
            make_project(building, run=run)
            building.rename(done)
    return done


def built_copy(factory: pytest.TempPathFactory, dest: Path) -> Path:
    """A private copy of the pipeline after a real ``dvc repro``."""
    return copy_project(shared_project(factory, "e2e-built", run=True), dest)


def locked_copy(factory: pytest.TempPathFactory, dest: Path) -> Path:
    """A private copy of the pipeline with every stage recorded over placeholder outputs."""
    return copy_project(shared_project(factory, "e2e-locked", run=False), dest)


# --------------------------------------------------------------------------- inspecting


@pytest.fixture
def built_project(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    """A private copy of the pipeline after a real ``dvc repro``."""
    return built_copy(tmp_path_factory, tmp_path / "project")


@pytest.fixture
def locked_project(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    """A private copy of the pipeline with placeholder outputs in dvc.lock."""
    return locked_copy(tmp_path_factory, tmp_path / "project")


@pytest.fixture(params=["locked", pytest.param("built", marks=pytest.mark.slow)])
def project_copy(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                 tmp_path: Path) -> Path:
    """The pipeline with every stage in dvc.lock: over placeholders, or after a real run."""
    copy = locked_copy if request.param == "locked" else built_copy
    return copy(tmp_path_factory, tmp_path / "project")


def project_spec(root: Path) -> Spec:
    return load_spec(root / "params.toml")


def project_stages(root: Path) -> tuple[StageDef, ...]:
    """The stages the copy's spec runs, from the registry."""
    return stages_for(project_spec(root))


def set_param(root: Path, dotted: str, value: Any) -> None:
    """Set one key of params.toml (``section.key`` or deeper), keeping the rest."""
    path = root / "params.toml"
    doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    *parents, last = dotted.split(".")
    node: Any = doc
    for part in parents:
        node = node[part]
    node[last] = value
    path.write_text(tomlkit.dumps(doc), encoding="utf-8")


def readers(stages: Iterable[StageDef], key: str) -> set[str]:
    """The stages a change of ``key`` (``section.key``) reruns: validate (it reads the whole
    spec file) and every stage declaring the key's section, the key, or a table above it."""
    return {s.name for s in stages
            if s.reads_spec_file or any(key == d or key.startswith(d + ".") for d in s.sections)}


def producers(stages: Iterable[StageDef]) -> dict[str, str]:
    """Output path -> the stage that writes it."""
    return {out.path: s.name for s in stages for out in s.outputs()}


def upstream_of(stage: StageDef, spec: Spec, stages: Iterable[StageDef]) -> set[str]:
    """The stages whose outputs ``stage`` reads (directly)."""
    made_by = producers(stages)
    found = set()
    for dep in data_deps(stage, spec):
        for out, producer in made_by.items():
            if dep == out or dep.startswith(out + "/"):
                found.add(producer)
    return found


def downstream(names: set[str], spec: Spec, stages: tuple[StageDef, ...]) -> set[str]:
    """Every stage that reads, directly or through others, an output of ``names``."""
    found = set(names)
    changed = True
    while changed:
        changed = False
        for s in stages:
            if s.name not in found and upstream_of(s, spec, stages) & found:
                found.add(s.name)
                changed = True
    return found - names


def ran_stages(log: str) -> set[str]:
    """The stages ``dvc repro`` ran, from its output."""
    return set(_RUNNING.findall(log))


def read_lock(root: Path) -> dict[str, Any]:
    """dvc.lock's stages."""
    return yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8"))["stages"]


def changed_inputs(before: dict[str, Any], after: dict[str, Any], stage: str) -> set[str]:
    """The deps of a stage whose recorded hash differs between two dvc.lock versions,
    plus ``params.toml`` when the recorded params differ."""
    old, new = before.get(stage, {}), after.get(stage, {})
    old_deps = {d["path"]: d.get("md5") for d in old.get("deps", [])}
    new_deps = {d["path"]: d.get("md5") for d in new.get("deps", [])}
    changed = {p for p in old_deps.keys() | new_deps.keys() if old_deps.get(p) != new_deps.get(p)}
    if old.get("params") != new.get("params"):
        changed.add("params.toml")
    return changed


def out_hashes(lock: dict[str, Any], stage: str) -> dict[str, str]:
    """Output path -> recorded hash for one stage."""
    return {o["path"]: o.get("md5") for o in lock.get(stage, {}).get("outs", [])}


def cache_objects(root: Path) -> set[str]:
    """The md5s of the file objects in a repository's local DVC cache."""
    base = root / ".dvc" / "cache" / "files" / "md5"
    if not base.is_dir():
        return set()
    return {p.parent.name + p.name for p in base.glob("*/*") if not p.name.endswith(".dir")}


def tracked_file_md5s(root: Path, out_path: str) -> dict[str, str]:
    """Relative file name -> md5 for every file of a DVC-tracked folder, from the cache's
    .dir listing of the hash recorded in ``root`` (dvc.lock or a .dvc file)."""
    lock = read_lock(root) if (root / "dvc.lock").exists() else {}
    digest = next((o.get("md5") for s in lock.values() for o in s.get("outs", [])
                   if o["path"] == out_path), None)
    dvc_file = root / f"{out_path}.dvc"
    if digest is None and dvc_file.exists():
        digest = yaml.safe_load(dvc_file.read_text(encoding="utf-8"))["outs"][0]["md5"]
    if digest is None:
        raise KeyError(f"{out_path} is not a tracked output in {root}")
    listing = root / ".dvc" / "cache" / "files" / "md5" / digest[:2] / digest[2:]
    entries = json.loads(listing.read_text(encoding="utf-8"))
    return {e["relpath"]: e["md5"] for e in entries}


def file_sha256s(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (e.g. data/stages), by relative path: equal
    before and after a command means it changed no output."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}
