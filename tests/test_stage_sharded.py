"""Preprocessing as several processes through accelerate (gloo on the CPU): caption, embed,
latents and reference write the bytes one process writes, and reuse what they can.

The process count comes from the environment (``AIPROD_ACCELERATE_CONFIG``), never from the
spec, so it cannot rerun a stage; here it is a two-process config on this machine.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from aiprod_recipes.names import ACCELERATE_CONFIG_ENV, PARTS_DIR, stage_dir
from aiprod_recipes.runtime import run_stage
from aiprod_recipes.store.shards import ShardReader, ShardWriter
from tests.conftest import TWO_PROCESSES, copy_project, free_port, prepare_project

SPEC = {
    "video": {"buckets": [{"width": 64, "height": 64, "frames": 9}]},
    "reference": {"enabled": True, "downscale": 2},
    "strategy": {"type": "video_to_video"},
}
STAGES = ("caption", "embed", "latents", "reference")

def _files(stage: str, root: Path = Path()) -> dict[str, bytes]:
    folder = root / stage_dir(stage)
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_project(tmp_path_factory.mktemp("sharded"), ["pulse", "sunrise", "orbits"],
                           stages=("base", "ingest"), **SPEC)


@pytest.fixture(scope="module")
def one_process(prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same project after each stage ran in one process."""
    root = tmp_path_factory.mktemp("one") / "project"
    shutil.copytree(prepared, root)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv(ACCELERATE_CONFIG_ENV, raising=False)
        for stage in STAGES:
            run_stage(stage)
    return root


def _keep_all_but_one(source: Path, dest: Path) -> str:
    """A previous output holding every item of ``source`` but the first: what a run on one
    clip fewer writes (identical inputs, identical bytes)."""
    reader = ShardReader(source)
    rows = sorted(reader.rows, key=lambda r: r["key"])
    with ShardWriter(dest, reader) as writer:
        for row in rows[1:]:
            writer.reuse(row["key"], row["item"])
    return rows[0]["item"]


@pytest.mark.slow
def test_two_processes_write_the_one_process_bytes(
        prepared: Path, one_process: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    copy = copy_project(prepared, tmp_path / "project", monkeypatch)
    monkeypatch.setenv(ACCELERATE_CONFIG_ENV, str(copy / "two.yaml"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # two processes on one machine's CPU
    _keep_all_but_one(one_process / stage_dir("latents"), copy / stage_dir("latents"))
    reports = {}
    for stage in STAGES:
        (copy / "two.yaml").write_text(TWO_PROCESSES.format(port=free_port()))
        reports[stage] = run_stage(stage)
        assert reports[stage].pop("processes") == 2
        assert _files(stage) == _files(stage, one_process), stage
        assert not (copy / stage_dir(stage) / PARTS_DIR).exists()
    assert reports["caption"] == {"captioned": 3, "reused": 0, "failed": 0, "missing": 0}
    assert (reports["embed"]["encoded"], reports["embed"]["reused"]) == (3, 0)
    assert (reports["latents"]["encoded"], reports["latents"]["reused"]) == (1, 2)
    assert (reports["reference"]["encoded"], reports["reference"]["reused"]) == (3, 0)


TWO_MACHINES = """\
compute_environment: LOCAL_MACHINE
distributed_type: MULTI_GPU
num_machines: 2
machine_rank: {rank}
num_processes: 2
main_process_ip: 127.0.0.1
main_process_port: {port}
mixed_precision: "no"
rdzv_backend: static
same_network: true
use_cpu: false
"""


@pytest.mark.slow
def test_a_second_machine_joins_and_the_first_writes(
        prepared: Path, one_process: Path, tmp_path: Path) -> None:
    """Two "machines" on this one, sharing the project folder: the one with machine_rank 1
    runs the same command, computes its share under the main machine's output and leaves
    every output alone."""
    import os
    import subprocess

    from tests.conftest import BIN

    copy = tmp_path / "project"
    shutil.copytree(prepared, copy)
    port = free_port()
    procs = []
    for rank in (0, 1):
        (copy / f"machine{rank}.yaml").write_text(TWO_MACHINES.format(rank=rank, port=port))
        env = {**os.environ, ACCELERATE_CONFIG_ENV: f"machine{rank}.yaml",
               "CUDA_VISIBLE_DEVICES": "", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        procs.append(subprocess.Popen([str(BIN / "aiprod-recipes"), "run", "latents"], cwd=copy,
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    assert "processes=2" in logs[0] and "main machine writes" in logs[1]
    assert _files("latents", copy) == _files("latents", one_process)
    assert sorted(p.name for p in (copy / "data" / "stages").iterdir()) == [
        "base", "ingest", "latents"]


@pytest.mark.slow
def test_two_processes_caption_with_the_local_model(
        prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Caption through the local Qwen2.5-Omni model, one process then two: same captions."""
    from tests.caption_fixtures import build_tiny_qwen_omni
    from tests.conftest import write_spec

    copy = copy_project(prepared, tmp_path / "project", monkeypatch)
    build_tiny_qwen_omni(copy / "qwen")
    write_spec(copy, data={"raw_dir": "raw"}, **SPEC,
               caption={"backend": {"type": "qwen_omni", "model_dir": "qwen", "device": "cpu",
                                    "num_frames": 2, "max_new_tokens": 4}})
    monkeypatch.delenv(ACCELERATE_CONFIG_ENV, raising=False)
    run_stage("caption")
    one = _files("caption")
    shutil.rmtree(copy / stage_dir("caption"))
    (copy / "two.yaml").write_text(TWO_PROCESSES.format(port=free_port()))
    monkeypatch.setenv(ACCELERATE_CONFIG_ENV, str(copy / "two.yaml"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    report = run_stage("caption")
    assert report == {"captioned": 3, "reused": 0, "failed": 0, "missing": 0, "processes": 2}
    assert _files("caption") == one
