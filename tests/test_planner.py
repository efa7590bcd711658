"""The memory planner: parameter counts on the meta device, the activation model against the
measured peak of the tiny model's real training step, the suggestions, the command, and the
GPU check's CPU path."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import msgspec
import pytest
import torch

from aiprod_recipes.cli import main
from aiprod_recipes.model.header import read_header
from aiprod_recipes.model.loader import load_components
from aiprod_recipes.model.text import PromptFeatures
from aiprod_recipes.model.tiny import TinyPaths, build_tiny_model
from aiprod_recipes.model.tiny_config import GEMMA_HIDDEN
from aiprod_recipes.planner.configs import load_model_config, published
from aiprod_recipes.planner.estimate import estimate, make_plan
from aiprod_recipes.planner.flops import step_flops, token_kind
from aiprod_recipes.planner.measure import LiveTensorBytes, peak_bytes
from aiprod_recipes.planner.params import inventory
from aiprod_recipes.planner.report import parse_size, render_text
from aiprod_recipes.planner.workload import Workload, largest
from aiprod_recipes.recipes import recipe_path
from aiprod_recipes.spec import Bucket, CheckpointModel, Spec, TinyModel
from aiprod_recipes.specio import load_spec
from aiprod_recipes.training.forward import Batch
from aiprod_recipes.training.loop import Sections, setup, train_step
from tests.model_fixtures import tiny_model  # noqa: F401

REPO = Path(__file__).resolve().parent.parent
CALIBRATION_LAYERS = 4
CALIBRATION_BUCKETS = (Bucket(width=256, height=192, frames=25),
                       Bucket(width=512, height=256, frames=41))
TOLERANCE = 0.25


def _replace(spec: Spec, section: str, **values: object) -> Spec:
    part = msgspec.structs.replace(getattr(spec, section), **values)
    return msgspec.structs.replace(spec, **{section: part})


def _tiny_spec(layers: int = 2, **train: object) -> Spec:
    spec = load_spec(recipe_path("tiny"))
    spec = _replace(spec, "model", source=TinyModel(layers=layers))
    return _replace(spec, "train", **train) if train else spec


# --------------------------------------------------------------------------- parameters

def test_published_ltx2_19b_has_19_billion_transformer_parameters() -> None:
    inv = inventory(published("ltx2-19b"))
    assert inv.num_layers == 48
    assert abs(inv.total - 19e9) / 19e9 < 0.05
    assert 1.0e9 < inv.processor < 2.0e9  # Gemma-3-12B feature projection + two connectors


def test_a_checkpoint_is_sized_from_its_header(tiny_model: TinyPaths) -> None:  # noqa: F811
    spec = _replace(_tiny_spec(), "model", source=CheckpointModel(
        path=str(tiny_model.checkpoint), gemma_dir=str(tiny_model.gemma_dir)))
    inv = inventory(load_model_config(spec))
    _, header = read_header(tiny_model.checkpoint)

    def stored(prefixes: tuple[str, ...], without: tuple[str, ...] = ()) -> int:
        return sum(torch.Size(v["shape"]).numel() for k, v in header.items()
                   if k.startswith(prefixes) and not k.startswith(without))

    connectors = ("model.diffusion_model.video_embeddings_connector.",
                  "model.diffusion_model.audio_embeddings_connector.")
    assert inv.total == stored(("model.diffusion_model.",), connectors)
    assert inv.processor == stored(("text_embedding_projection.", *connectors))
    assert inv.total == inventory(load_model_config(_tiny_spec())).total


def test_int8_halves_the_weights_and_swap_moves_whole_blocks() -> None:
    inv = inventory(published("ltx2-19b"))
    bf16, int8 = inv.weight_bytes(2, "none"), inv.weight_bytes(2, "int8")
    assert 0.45 < int8 / bf16 < 0.55
    assert inv.weight_bytes(2, "none", blocks=1) == 2 * inv.block_params
    assert inv.weight_bytes(2, "int8", blocks=1) < 0.55 * 2 * inv.block_params


def test_lora_parameters_follow_peft_matching() -> None:
    inv = inventory(load_model_config(_tiny_spec()))
    targets = inv.lora_targets(["to_q"])
    assert targets and all(t.name.endswith(".to_q") for t in targets)
    assert inv.lora_parameters(4, ["to_q"]) == sum(4 * (t.in_features + t.out_features)
                                                    for t in targets)


# --------------------------------------------------------------------------- measurement

def test_live_tensor_bytes_follows_allocations_and_frees() -> None:
    before = torch.zeros(1000)
    with LiveTensorBytes() as live:
        a = torch.ones(1000)              # 4000 bytes
        view = before.view(10, 100)       # a view of an older tensor: nothing new
        b = a * 2                         # 8000
        del a                             # 4000
        c = torch.empty(500)              # 6000
    assert (live.peak, live.current) == (8000, 6000)
    assert view.shape == (10, 100) and b.numel() + c.numel() == 1500


# --------------------------------------------------------------------------- calibration

@pytest.fixture(scope="module")
def calibration_model(tmp_path_factory: pytest.TempPathFactory) -> TinyPaths:
    return build_tiny_model(tmp_path_factory.mktemp("tiny4"), layers=CALIBRATION_LAYERS)


def _measured_step(paths: TinyPaths, spec: Spec) -> int:
    """Peak bytes one real training step adds on top of the resident weights and optimizer."""
    load = largest(spec)
    b = load.bucket
    comps = load_components(paths.checkpoint, None, ["transformer", "embeddings_processor"],
                            "cpu", getattr(torch, spec.model.dtype))
    state = setup(comps.transformer, comps.embeddings_processor, Sections.from_spec(spec),
                  "calibration", "cpu")
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(load.text, dtype=torch.bool)
    mask[-16:] = True
    batch = Batch(
        video=torch.randn(1, 128, 1 + (b.frames - 1) // 8, b.height // 32, b.width // 32,
                          generator=g),
        text=[PromptFeatures(video=torch.randn(load.text, GEMMA_HIDDEN, generator=g),
                             audio=None, mask=mask)],
        audio=torch.randn(1, 8, load.audio, 16, generator=g), fps=spec.ingest.fps)
    train_step(state, [batch])  # optimizer state and the cached text context exist after it
    return peak_bytes(lambda: train_step(state, [batch]), torch.device("cpu"))


@pytest.mark.parametrize("checkpointing", [False, True])
def test_activation_model_matches_the_measured_training_step(
        calibration_model: TinyPaths, checkpointing: bool) -> None:
    for bucket in CALIBRATION_BUCKETS:
        spec = _replace(_tiny_spec(CALIBRATION_LAYERS, gradient_checkpointing=checkpointing),
                        "video", buckets=[bucket])
        config = load_model_config(spec)
        planned = estimate(spec, config, inventory(config), "cpu").breakdown
        measured = _measured_step(calibration_model, spec)
        step = planned["activations"] + planned["gradients"]
        assert abs(step - measured) / measured < TOLERANCE, (bucket, step, measured)


# --------------------------------------------------------------------------- suggestions

def _peak(spec: Spec) -> int:
    config = load_model_config(spec)
    return estimate(spec, config, inventory(config), "cpu").peak_bytes


def _suggested(spec: Spec, gpu: int) -> tuple[str, ...]:
    config = load_model_config(spec)
    plan = make_plan(spec, config, inventory(config), "cpu", gpu)
    assert not plan.fits and plan.suggestion is not None
    assert plan.suggestion.peak_bytes <= gpu
    assert f"cheapest change:        {plan.suggestion.changes[0]}" in render_text(plan, "x")
    return plan.suggestion.changes


def test_the_cheapest_change_comes_first() -> None:
    spec = _tiny_spec()
    plain, checkpointed = _peak(spec), _peak(_replace(spec, "train",
                                                      gradient_checkpointing=True))
    assert checkpointed < plain
    assert _suggested(spec, (plain + checkpointed) // 2) == (
        "train.gradient_checkpointing = true",)
    # 8-bit Adam keeps 32-bit moments for tensors under 4096 elements: a rank the tiny
    # model's adapters reach that size with.
    spec = _replace(_replace(spec, "train", gradient_checkpointing=True), "lora", rank=128)
    adamw, eight_bit = _peak(spec), _peak(_replace(spec, "optim", optimizer="adamw8bit"))
    assert eight_bit < adamw
    assert _suggested(spec, (adamw + eight_bit) // 2) == (
        'optim.optimizer = "adamw8bit"',)


def test_a_shorter_bucket_is_the_last_resort() -> None:
    # The low-VRAM preset already checkpoints, uses 8-bit Adam and an int8 base; the tiny
    # model has too few blocks to swap: only the data is left to change.
    spec = load_spec(recipe_path("ltx2-av-lora-lowvram"))
    spec = _replace(spec, "model", source=TinyModel(layers=2), device="cpu")
    spec = _replace(spec, "video", buckets=[Bucket(width=512, height=512, frames=65)])
    assert _suggested(spec, _peak(spec) - 1) == ("video.buckets: at most 57 frames",)


# --------------------------------------------------------------------------- flops

def test_step_flops_count_what_a_step_computes() -> None:
    inv = inventory(published("ltx2-19b"))
    load = Workload(Bucket(width=512, height=352, frames=89), 1, 2112, 0, 93, 128)
    tokens = {"video": load.video, "audio": load.audio, "text": load.text, "sample": 1}
    linear = sum(2.0 * lin.weights * tokens[token_kind(lin)] for lin in inv.linears)
    full = step_flops(inv, load, None, (), False, 1)
    lora = step_flops(inv, load, 16, inv.lora_targets(["to_q"]), False, 1)
    attention = full.total - 3 * linear  # forward, input and weight gradients: 6 N T
    assert attention > 0
    assert lora.total == pytest.approx(2 * linear + attention, rel=0.01)
    checkpointed = step_flops(inv, load, None, (), True, 2)
    assert checkpointed.total == pytest.approx(2 * full.total + checkpointed.recompute)
    assert checkpointed.recompute < 2 * (linear + attention / 3)


# --------------------------------------------------------------------------- command

def test_plan_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(recipe_path("tiny")), "--json", "--gpu-memory", "1GiB"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fits"] is True and out["suggestion"] is None
    assert out["peak_bytes"] == sum(out["breakdown"].values())
    assert out["transformer_parameters"] > out["trainable_parameters"] > 0
    assert set(out["activations"]) == {"no_checkpointing", "gradient_checkpointing"}


def test_plan_prints_the_breakdown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(recipe_path("tiny")), "--gpu-memory", "1GiB"]) == 0
    out = capsys.readouterr().out
    assert "fits 1.0 GiB: yes" in out
    for line in ("transformer parameters", "trainable parameters", "peak device memory",
                 "activations", "FLOPs per step", "optimizer states", "text connectors"):
        assert line in out


def test_swapping_every_block_is_refused(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "params.toml"
    tiny = recipe_path("tiny").read_text()
    assert "blocks_to_swap = 0" in tiny and "layers = 2" in tiny
    path.write_text(tiny.replace("blocks_to_swap = 0", "blocks_to_swap = 2"))
    assert main(["plan", str(path)]) == 2
    assert "memory.blocks_to_swap" in capsys.readouterr().err


def test_a_missing_checkpoint_points_to_the_published_model(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(recipe_path("ltx2-av-lora"))]) == 2
    assert "--model ltx2-19b" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "size"), [("24GiB", 24 << 30), ("80GB", 80 * 10**9),
                                            ("48", 48 << 30), ("24564MiB", 24564 << 20)])
def test_gpu_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_a_bad_gpu_size_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(recipe_path("tiny")), "--gpu-memory", "lots"]) == 2
    assert "--gpu-memory" in capsys.readouterr().err


# --------------------------------------------------------------------------- GPU check

def test_gpu_check_runs_its_cpu_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = REPO / "bench" / "gpu_check.py"
    module_spec = importlib.util.spec_from_file_location("gpu_check", source)
    assert module_spec is not None and module_spec.loader is not None
    gpu_check = importlib.util.module_from_spec(module_spec)
    monkeypatch.setitem(sys.modules, "gpu_check", gpu_check)
    module_spec.loader.exec_module(gpu_check)
    out = tmp_path / "results.json"
    assert gpu_check.main(["--dry-run", "--presets", "ltx2-av-lora-lowvram", "--steps", "1",
                           "--json", str(out)]) == 0
    (result,) = json.loads(out.read_text())["results"]
    assert result["preset"] == "ltx2-av-lora-lowvram"
    assert abs(result["planned_bytes"] / result["measured_bytes"] - 1) < TOLERANCE
    assert result["flops_per_step"] > 0 and result["mfu"] is None
