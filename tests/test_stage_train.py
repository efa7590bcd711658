"""The train stage: adapter + DVCLive output written while it runs, periodic validation, kept
checkpoints, trackers, kill and resume to identical bytes, fresh start when params change."""

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

from aiprod_recipes import render
from aiprod_recipes.cli import main as cli
from aiprod_recipes.names import ADAPTER_FILE as ADAPTER
from aiprod_recipes.names import (
    KEPT_CHECKPOINTS_DIR,
    KEPT_INDEX_FILE,
    LIVE_IMAGES,
    LIVE_VIDEOS,
    TRACKERS_DIR,
    TRAIN_CHECKPOINTS_DIR,
    TRAIN_LIVE_DIR,
    kept_checkpoint_name,
)
from aiprod_recipes.runtime import StageFailed, run_stage
from aiprod_recipes.specio import load_spec
from tests.conftest import (
    BIN,
    TWO_PROCESSES,
    copy_project,
    free_port,
    prepare_project,
    run_cmd,
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
    metrics = json.loads((TRAIN_LIVE_DIR / "metrics.json").read_text())
    assert metrics["step"] == 18 and "loss" in metrics["train"]
    rows = (TRAIN_LIVE_DIR / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()
    steps = [int(line.split("\t")[0]) for line in rows[1:]]
    assert steps == list(range(2, 19, 2))
    assert not TRAIN_CHECKPOINTS_DIR.exists() or not any(TRAIN_CHECKPOINTS_DIR.iterdir())


SMALL_EVAL = {"max_samples": 2, "steps": 2, "bucket": {"width": 32, "height": 32, "frames": 9},
              "loss_levels": [0.5]}


def _tsv_steps(path: Path) -> list[int]:
    return [int(line.split("\t")[0]) for line in path.read_text().splitlines()[1:] if line]


def _start_train(project: Path) -> subprocess.Popen:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.Popen([str(BIN / "aiprod-recipes"), "run", "train"], cwd=project,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_live_metrics_grow_while_the_stage_runs(copy: Path) -> None:
    """Another process reads DVCLive's files, at the paths dvc.yaml declares, while the stage
    is still running; they gain rows as it goes."""
    write_spec(copy, data={"raw_dir": "raw"},
               **{**SPEC, "train": {"steps": 400, "checkpoint_every": 0, "log_every": 1}})
    doc = render.render(load_spec(copy / "params.toml"))
    summary_path = copy / next(m for m in doc["metrics"] if m.startswith(str(TRAIN_LIVE_DIR)))
    plots = copy / next(iter(doc["plots"][0]))
    proc = _start_train(copy)
    counts: list[int] = []
    try:
        for _ in range(12000):  # a bounded wait: at most ~10 minutes on a loaded machine
            assert proc.poll() is None, "the train stage ended before its files were read"
            loss = plots / "train" / "loss.tsv"
            n = len(_tsv_steps(loss)) if loss.exists() else 0
            if n and (not counts or n > counts[-1]):
                counts.append(n)
            if len(counts) >= 3:
                break
            time.sleep(0.05)
        summary = None
        for _ in range(200):  # DVCLive rewrites metrics.json in place: read a whole one
            try:
                summary = json.loads(summary_path.read_text())
                break
            except json.JSONDecodeError:
                time.sleep(0.01)
        assert proc.poll() is None, "the files must be read before the stage ends"
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert len(counts) >= 3 and counts == sorted(counts)
    assert summary is not None and summary["step"] >= counts[0] and "loss" in summary["train"]
    assert not TRAIN.exists(), "the stage's own output appears only when it succeeds"


def _expected_samples() -> int:
    """One validation sample per val clip, up to eval.max_samples (the val clips are drawn
    by content hash, so their number follows the clips' bytes)."""
    from aiprod_recipes.names import SPLIT, stage_dir
    from aiprod_recipes.stages.split import read_split

    samples = min(len(read_split(stage_dir(SPLIT), "val")), SMALL_EVAL["max_samples"])
    assert samples >= 1
    return samples


def test_periodic_validation_and_kept_checkpoints(copy: Path) -> None:
    """Every 4 steps: one preview and one mp4 per sample and the held-out loss; the last 2
    saved adapters and the best one kept, each usable by `sample`."""
    write_spec(copy, data={"raw_dir": "raw"},
               **{**SPEC, "train": {**SPEC["train"], "steps": 12, "keep_checkpoints": 2},
                  "eval": {**SMALL_EVAL, "every_steps": 4}})
    report = run_stage("train")
    samples = _expected_samples()
    for sub, ext in ((LIVE_IMAGES, "gif"), (LIVE_VIDEOS, "mp4")):
        found = sorted(p.relative_to(TRAIN_LIVE_DIR / sub).as_posix()
                       for p in (TRAIN_LIVE_DIR / sub).rglob("*") if p.is_file())
        assert found == [f"sample_0{k}/{s}.{ext}" for k in range(samples) for s in (12, 4, 8)]
    val = TRAIN_LIVE_DIR / "plots" / "metrics" / "val" / "loss.tsv"
    assert _tsv_steps(val) == [4, 8, 12]
    losses = {int(a): float(b) for a, b in (line.split("\t") for line in
                                            val.read_text().splitlines()[1:])}
    best = min(losses, key=lambda s: (losses[s], s))
    # Saved at the checkpoint steps (3, 6, 9, 12) and the validation steps (4, 8, 12).
    expected = sorted({9, 12, best})
    index = json.loads((TRAIN / KEPT_CHECKPOINTS_DIR / KEPT_INDEX_FILE).read_text())
    assert [e["step"] for e in index["checkpoints"]] == expected
    assert index["best"] == kept_checkpoint_name(best) == report["best"]
    from safetensors import safe_open

    with safe_open(str(TRAIN / ADAPTER), "pt") as f:
        header = f.metadata()
    for step in expected:
        kept = TRAIN / KEPT_CHECKPOINTS_DIR / kept_checkpoint_name(step)
        with safe_open(str(kept), "pt") as f:
            assert f.metadata() == header
    kept = TRAIN / KEPT_CHECKPOINTS_DIR / kept_checkpoint_name(expected[0])
    assert cli(["sample", "--prompt", "a pulse", "--adapter", f"{kept}:0.8", "--steps", "2",
                "--out", "kept.mp4"]) == 0
    assert Path("kept.mp4").stat().st_size > 0


@pytest.mark.slow
def test_periodic_validation_of_image_to_video(copy: Path) -> None:
    """Conditioned samples during training: the val clips' first frames, as evaluate's."""
    write_spec(copy, data={"raw_dir": "raw"},
               **{**SPEC, "strategy": {"type": "image_to_video"},
                  "train": {**SPEC["train"], "steps": 4},
                  "eval": {**SMALL_EVAL, "every_steps": 4}})
    run_stage("train")
    previews = sorted((TRAIN_LIVE_DIR / LIVE_IMAGES).rglob("*.gif"))
    assert [p.relative_to(TRAIN_LIVE_DIR / LIVE_IMAGES).as_posix() for p in previews] == [
        f"sample_0{k}/4.gif" for k in range(_expected_samples())]


@pytest.mark.parametrize("tracker", ["tensorboard", pytest.param("wandb", marks=pytest.mark.slow)])
def test_trackers_write_offline(copy: Path, tracker: str,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip(tracker, reason=f"pip install 'aiprod-recipes[{tracker}]' to run this")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    write_spec(copy, data={"raw_dir": "raw"},
               **{**SPEC, "train": {**SPEC["train"], "steps": 4, "trackers": [tracker]}})
    run_stage("train")
    if tracker == "wandb":
        assert list((TRACKERS_DIR / "wandb").glob("offline-run-*/run-*.wandb"))
    else:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        tags = set()
        for path in (TRACKERS_DIR / "tensorboard").rglob("events.out.tfevents.*"):
            acc = EventAccumulator(str(path))
            acc.Reload()
            tags |= set(acc.Tags()["scalars"])
        assert "train/loss" in tags
    assert not any(TRACKERS_DIR.resolve().is_relative_to(p.resolve())
                   for p in (TRAIN, TRAIN_LIVE_DIR))


def test_a_missing_tracker_names_its_extra(copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "wandb" else real(name, *a))
    write_spec(copy, data={"raw_dir": "raw"},
               **{**SPEC, "train": {**SPEC["train"], "trackers": ["wandb"]}})
    with pytest.raises(StageFailed, match=r"pip install 'aiprod-recipes\[wandb\]'"):
        run_stage("train")


def _reference_first_loss(adapter: Path) -> float:
    """The loss of ``adapter``'s weights on the first batch of a run, with that run's noise
    (batch 0, generators from train.seed), computed outside the stage."""
    from aiprod_recipes.model.runtime import load_model, model_paths
    from aiprod_recipes.stages.split import read_split
    from aiprod_recipes.training.data import TrainData
    from aiprod_recipes.training.forward import text_context, tokenize
    from aiprod_recipes.training.lora import attach_adapter
    from aiprod_recipes.training.objective import batch_losses, make_generators
    from aiprod_recipes.training.strategies import strategy_for

    spec = load_spec("params.toml")
    c = load_model(spec.model, model_paths(spec), {"transformer", "embeddings_processor"})
    attach_adapter(c.transformer, adapter)
    strategy = strategy_for(spec.strategy)
    stages = Path("data/stages")
    data = TrainData.open(read_split(stages / "split", "train"),
                          {n: stages / n for n in ("latents", "embed", "reference")},
                          spec.train.batch_size, spec.train.seed, strategy,
                          spec.reference.downscale)
    batch = data.batch_at(0)
    with torch.no_grad():
        losses = batch_losses(c.transformer, tokenize(batch, strategy.with_audio),
                              text_context(c.embeddings_processor, batch), strategy, spec.flow,
                              make_generators(spec.train.seed))
    return float(losses.total)


def test_init_from_continues_a_trained_adapter(copy: Path) -> None:
    """Its first step's loss is the earlier adapter's loss on the same batch and noise."""
    train = {**SPEC["train"], "steps": 6, "log_every": 1}
    write_spec(copy, data={"raw_dir": "raw"}, **{**SPEC, "train": train})
    run_stage("train")
    loss_tsv = TRAIN_LIVE_DIR / "plots/metrics/train/loss.tsv"
    fresh = float(loss_tsv.read_text().splitlines()[1].split("\t")[1])
    start = Path("adapters/start.safetensors")
    start.parent.mkdir()
    shutil.copyfile(TRAIN / ADAPTER, start)
    write_spec(copy, data={"raw_dir": "raw"},
               **{**SPEC, "train": train, "lora": {"init_from": start.as_posix(), "alpha": 4.0}})
    report = run_stage("train")
    first = float(loss_tsv.read_text().splitlines()[1].split("\t")[1])
    reference = _reference_first_loss(start)
    assert report["steps"] == 6
    assert first == pytest.approx(reference, rel=1e-4)
    assert abs(fresh - reference) > 1e-3, "a fresh adapter starts elsewhere"
    write_spec(copy, data={"raw_dir": "raw"},
               **{**SPEC, "train": train, "lora": {"init_from": start.as_posix(), "rank": 4}})
    with pytest.raises(StageFailed, match=r"lora\.rank = 4 but .* has rank 8"):
        run_stage("train")


def _checkpoint_step(project: Path) -> int:
    for state in (project / TRAIN_CHECKPOINTS_DIR).glob("*/current/state.json"):
        try:
            return int(json.loads(state.read_text())["step"])
        except (OSError, ValueError, KeyError):
            return 0
    return 0


def _kill_after_a_checkpoint(project: Path, min_step: int = 1) -> None:
    """Start the train stage in its own process and SIGKILL it once a checkpoint of step
    ``min_step`` or later exists."""
    proc = _start_train(project)
    try:
        for _ in range(12000):
            if _checkpoint_step(project) >= min_step:
                break
            if proc.poll() is not None:
                pytest.fail("the train stage ended before it could be killed")
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
@pytest.mark.slow
def test_killed_run_resumes_to_identical_bytes(copy: Path, tmp_path: Path) -> None:
    """With periodic validation and kept checkpoints: the outputs, the live files (metrics,
    previews, videos) and the kept adapters equal those of a run that was never killed."""
    write_spec(copy, data={"raw_dir": "raw"},
               **{**SPEC, "train": {**SPEC["train"], "keep_checkpoints": 2},
                  "eval": {**SMALL_EVAL, "max_samples": 1, "every_steps": 4}})
    reference = tmp_path / "reference"
    shutil.copytree(copy, reference)
    _kill_after_a_checkpoint(copy, min_step=9)
    assert not TRAIN.exists(), "a killed stage must leave no output"
    report = run_stage("train")
    assert report["resumed"] and report["steps"] == 18
    os.chdir(reference)
    run_stage("train")
    assert _files(copy / TRAIN) == _files(reference / TRAIN)
    live = _files(reference / TRAIN_LIVE_DIR)
    assert "plots/images/sample_00/16.gif" in live and "videos/sample_00/8.mp4" in live
    assert _files(copy / TRAIN_LIVE_DIR) == live


@pytest.mark.slow
def test_other_params_start_fresh(copy: Path) -> None:
    _kill_after_a_checkpoint(copy)
    write_spec(copy, data={"raw_dir": "raw"}, **{**SPEC, "optim": {"learning_rate": 5e-3}})
    report = run_stage("train")
    assert not report["resumed"] and report["steps"] == 18


@pytest.mark.slow
def test_two_process_ddp_on_cpu(copy: Path) -> None:
    """Two gloo processes through accelerate; only the main one writes the outputs (and
    validates while the other waits)."""
    (copy / "ddp.yaml").write_text(TWO_PROCESSES.format(port=free_port()))
    write_spec(copy, data={"raw_dir": "raw"},
               **{**SPEC, "train": {**SPEC["train"], "accelerate_config": "ddp.yaml",
                                    "keep_checkpoints": 1},
                  "eval": {**SMALL_EVAL, "max_samples": 1, "every_steps": 9}})
    report = run_stage("train")
    assert report["processes"] == 2 and report["steps"] == 18 and report["kept"] >= 1
    assert (TRAIN / ADAPTER).stat().st_size > 0
    assert json.loads((TRAIN_LIVE_DIR / "metrics.json").read_text())["step"] == 18
    assert _tsv_steps(TRAIN_LIVE_DIR / "plots/metrics/val/loss.tsv") == [9, 18]
    assert not (TRAIN / ".train-report.json").exists()


def _train_under(project: Path, config: str, mode: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    port = free_port()
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
    ddp = _train_under(copy, TWO_PROCESSES, mode)
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
    sample = ["sample", "--prompt", "a pulse", "--steps", "2", "--no-audio"]
    assert cli([*sample, "--transformer", str(TRAIN / FULL_WEIGHTS), "--out", "full.mp4"]) == 0
    assert cli([*sample, "--out", "base.mp4"]) == 0
    assert Path("full.mp4").read_bytes() != Path("base.mp4").read_bytes()
    assert cli([*sample, "--adapter", str(TRAIN / FULL_WEIGHTS), "--out", "x.mp4"]) == 1
    from tests.fake_hub import TOKEN, fake_hub

    with fake_hub() as hub:
        proc = run_cmd([str(BIN / "aiprod-recipes"), "push", "alice/full"], copy, check=False,
                       env={"HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN, "HF_HUB_OFFLINE": "0"})
    assert proc.returncode == 0, proc.stderr
    files = hub.repos["alice/full"]["files"]
    assert sorted(files) == sorted(["README.md", FULL_WEIGHTS, "metrics.json"])
    assert files[FULL_WEIGHTS] == (TRAIN / FULL_WEIGHTS).read_bytes()
