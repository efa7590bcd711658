"""The evaluate stage on the tiny model: metrics keys, samples with sound, the report."""

from __future__ import annotations

import json
from pathlib import Path

import av
import pytest
import torch

from aiprod_recipes.model.runtime import load_model, model_fingerprint, model_paths
from aiprod_recipes.provenance import stage_record, write_provenance
from aiprod_recipes.registry import get_stage
from aiprod_recipes.runtime import run_stage, stage_paths
from aiprod_recipes.specio import load_spec
from aiprod_recipes.stages import evaluate
from aiprod_recipes.stages.context import StageFailed
from aiprod_recipes.training.lora import (
    PEFT_ADAPTER_NAME,
    AdapterMeta,
    add_lora,
    lora_layers,
    save_adapter,
)
from tests.conftest import copy_project, prepare_project, write_spec

SPEC = {
    "video": {"buckets": [{"width": 32, "height": 32, "frames": 9}]},
    "split": {"val_fraction": 0.5, "seed": 0},
    "eval": {"max_samples": 1, "steps": 2, "bucket": {"width": 32, "height": 32, "frames": 9},
             "loss_levels": [0.2, 0.8]},
}
LEVEL_KEYS = [f"loss_{m}_level_{s}" for m in ("base", "adapter") for s in ("0.2", "0.8")]


def make_adapter(project: Path, zero_b: bool, seed: int = 0) -> Path:
    """A train-stage output: an adapter on the project's base, lora_B random or zero, and
    the provenance the runtime writes beside it (evaluate reads the training settings
    there)."""
    spec = load_spec(project / "params.toml")
    paths = model_paths(spec)
    model = load_model(spec.model, paths, {"transformer"}).transformer
    add_lora(model, spec.lora, seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            b = layer.lora_B[PEFT_ADAPTER_NAME].weight
            b.copy_(torch.zeros_like(b) if zero_b else 0.05 * torch.randn(b.shape, generator=gen))
    meta = AdapterMeta(rank=spec.lora.rank, alpha=spec.lora.alpha,
                       target_modules=tuple(spec.lora.target_modules), strategy="text_to_video",
                       base_fingerprint=model_fingerprint(paths), spec_hash="test")
    out = project / "data/stages/train"
    path = save_adapter(model, out / "adapter.safetensors", meta)
    stage = get_stage("train", spec)
    write_provenance(out, stage_record("train", spec, stage.params(spec), [], None))
    return path


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with every stage before train done, shared by the tests (copied each time)."""
    return prepare_project(tmp_path_factory.mktemp("prepared"), ["pulse", "sunrise", "orbits"],
                           **SPEC)


@pytest.fixture
def copy(prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return copy_project(prepared, tmp_path / "project", monkeypatch)


def run_evaluate(project: Path, folder: str = "out") -> tuple[dict, Path]:
    spec = load_spec(project / "params.toml")
    out = project / folder
    out.mkdir()
    paths = stage_paths(get_stage("evaluate", spec), spec, out, None)
    return evaluate.run(spec, paths), out


def test_metrics_samples_and_report(copy: Path) -> None:
    """Also: a sample plays at the rate its clips were stored at, not at ingest.fps (the
    clips carry it; evaluate does not read the ingest section)."""
    write_spec(copy, data={"raw_dir": "raw"}, ingest={"fps": 12.0}, **SPEC)
    make_adapter(copy, zero_b=False)
    report, out = run_evaluate(copy)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"loss_base", "loss_adapter", "improvement", "num_val_clips",
                            "num_samples", *LEVEL_KEYS}
    assert metrics["num_val_clips"] >= 1 and metrics["num_samples"] == report["samples"] == 1
    assert metrics["loss_base"] != metrics["loss_adapter"]
    assert metrics["improvement"] == pytest.approx(metrics["loss_base"] - metrics["loss_adapter"])
    assert report["loss_base"] == pytest.approx(metrics["loss_base"], abs=1e-6)
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["sample_00.mp4",
                                                                   "sample_00.png"]
    with av.open(str(out / "samples" / "sample_00.mp4")) as c:
        assert len(c.streams.video) == 1 and len(c.streams.audio) == 1
        assert c.streams.video[0].average_rate == 24
        assert sum(1 for _ in c.decode(video=0)) == 9
    text = (out / "report.md").read_text()
    assert "[![sample 1](samples/sample_00.png)](samples/sample_00.mp4)" in text
    assert "| all |" in text
    lora_row = next(line for line in text.splitlines() if line.startswith("| lora |"))
    assert "rank=8" in lora_row  # as the train output recorded it
    page = (out / "report.html").read_text()
    assert page.count("<video ") == 1 and "data:video/mp4;base64," in page


def test_zero_adapter_matches_base(copy: Path) -> None:
    write_spec(copy, data={"raw_dir": "raw"}, **{**SPEC, "eval": {**SPEC["eval"],
                                                                   "max_samples": 0}})
    make_adapter(copy, zero_b=True)
    report, out = run_evaluate(copy)
    metrics = json.loads((out / "metrics.json").read_text())
    assert report["samples"] == 0 and not (out / "samples").exists()
    assert metrics["loss_base"] == metrics["loss_adapter"]
    assert all(metrics[f"loss_base_level_{s}"] == metrics[f"loss_adapter_level_{s}"]
               for s in ("0.2", "0.8"))
    assert metrics["improvement"] == 0.0


UNDECLARED = {
    "data": {"raw_dir": "elsewhere", "extensions": [".mp4"]},
    "ingest": {"fps": 12.0, "strict": True},
    "caption": {"trigger_word": "other"},
    "video": {"buckets": [{"width": 64, "height": 64, "frames": 17}], "seed": 3},
    "audio": {"on_missing": "skip"},
    "reference": {"canny_low": 10, "canny_high": 20},
    "split": {"seed": 9},
    "lora": {"rank": 2, "dropout": 0.5},
    "optim": {"learning_rate": 0.5, "optimizer": "adamw8bit"},
    "train": {"steps": 7, "seed": 1, "log_every": 3, "checkpoint_every": 0},
    "flow": {"logit_std": 0.3, "timestep_sampler": "uniform"},
}
"""A change in every spec section (and key) evaluate does not declare as a param."""


def test_sections_evaluate_does_not_declare_do_not_change_its_output(copy: Path) -> None:
    """Evaluate's params are exactly what shapes its output: the same trained weights and
    stage outputs, evaluated under a spec that differs in every undeclared section, give
    the same metrics.json and report.md bytes."""
    no_samples = {**SPEC, "eval": {**SPEC["eval"], "max_samples": 0}}
    write_spec(copy, data={"raw_dir": "raw"}, **no_samples)
    make_adapter(copy, zero_b=False)
    spec = load_spec(copy / "params.toml")
    declared = get_stage("evaluate", spec).params(spec)
    assert {d.split(".")[0] for d in declared}.isdisjoint(set(UNDECLARED) - {"reference"})
    assert not any(d.startswith("reference.") and d.split(".")[1] in UNDECLARED["reference"]
                   for d in declared)
    _, first = run_evaluate(copy)
    write_spec(copy, **{**no_samples, **UNDECLARED})
    _, second = run_evaluate(copy, "out2")
    for name in ("metrics.json", "report.md"):
        assert (second / name).read_bytes() == (first / name).read_bytes(), name


def test_adapter_for_another_base_fails(copy: Path) -> None:
    path = make_adapter(copy, zero_b=True)
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as f:
        header = {**f.metadata(), "base_model_fingerprint": "0" * 64}
    save_file(load_file(str(path)), str(path), metadata=header)
    with pytest.raises(StageFailed, match="trained on base"):
        run_evaluate(copy)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["image_to_video", "video_to_video"])
def test_conditioned_samples(copy: Path, strategy: str) -> None:
    extra: dict = {"strategy": {"type": strategy}}
    if strategy == "video_to_video":
        extra["reference"] = {"enabled": True, "downscale": 1}
    write_spec(copy, data={"raw_dir": "raw"}, **SPEC, **extra)
    if strategy == "video_to_video":
        run_stage("reference")
    make_adapter(copy, zero_b=False)
    report, out = run_evaluate(copy)
    assert report["samples"] == 1
    text = (out / "report.md").read_text()
    assert f"1. {strategy}, seed 0" in text
    condition = ("sample_00_image.png" if strategy == "image_to_video"
                 else "sample_00_reference.png")
    assert (out / "samples" / condition).stat().st_size > 0
    assert f"](samples/{condition})" in text and "| output |" in text
    if strategy == "video_to_video":
        with av.open(str(out / "samples" / "sample_00_reference.mp4")) as c:
            assert sum(1 for _ in c.decode(video=0)) == 9
    with av.open(str(out / "samples" / "sample_00.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 9
        assert len(c.streams.audio) == 1  # the tiny recipe trains audio in every strategy


@pytest.mark.slow
def test_quantized_base_with_block_swap_evaluates_the_same(copy: Path) -> None:
    """quant.base is honoured (the base's loss moves) and block swap changes nothing."""
    make_adapter(copy, zero_b=False)
    _, plain = run_evaluate(copy, "plain")
    write_spec(copy, data={"raw_dir": "raw"}, **SPEC, quant={"base": "int8"})
    _, int8 = run_evaluate(copy, "int8")
    write_spec(copy, data={"raw_dir": "raw"}, **SPEC, quant={"base": "int8"},
               memory={"blocks_to_swap": 1})
    _, swapped = run_evaluate(copy, "swapped")
    metrics = {name: json.loads((out / "metrics.json").read_text())
               for name, out in (("plain", plain), ("int8", int8), ("swapped", swapped))}
    assert metrics["swapped"] == metrics["int8"]
    assert metrics["int8"]["loss_base"] != metrics["plain"]["loss_base"]
    sample = Path("samples") / "sample_00.mp4"
    assert (swapped / sample).read_bytes() == (int8 / sample).read_bytes()


def test_sample_fps_comes_from_the_stored_clips(tmp_path: Path) -> None:
    from aiprod_recipes.inference.samples import NoFrameRate, sample_fps
    from aiprod_recipes.store.shards import ShardReader

    rows = [{"key": f"k{i}", "item": f"c{i}", "shard": "k0.safetensors", "fps": fps}
            for i, fps in enumerate([25.0, 30.0, 30.0, 25.0, 12.0])]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    latents = ShardReader(tmp_path)
    assert sample_fps(latents, "c4") == 12.0
    assert sample_fps(latents, None) == 25.0  # most common; the lower on a tie
    assert sample_fps(latents, "not stored") == 25.0
    with pytest.raises(NoFrameRate, match="frame rate"):
        sample_fps(ShardReader(tmp_path / "empty"), None)
