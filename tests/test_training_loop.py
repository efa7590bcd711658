"""The loop end to end on the tiny model: losses fall per strategy (with pinned first
values), resume is byte-identical, runs are deterministic, NaN stops with the step."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from aiprod_recipes.training.forward import Batch
from aiprod_recipes.training.loop import NonFiniteLoss, run, setup, train_step
from aiprod_recipes.training.lora import AdapterMeta, adapter_state, save_adapter
from tests.test_training_fixtures import (  # noqa: F401
    STRATEGIES,
    batch_for,
    fresh_model,
    one_thread,
    sections,
)

GOLDEN_FIRST_LOSSES = {
    "text_to_video": [6.78417, 6.37170, 6.64459],
    "image_to_video": [3.13795, 4.06696, 3.22622],
    "video_to_video": [3.17669, 3.99755, 3.32874],
}
META = AdapterMeta(8, 8.0, ("to_q", "to_k", "to_v", "to_out.0"), "text_to_video", "", "")


def _losses(name: str, steps: int, **kw: object) -> list[float]:
    model, processor = fresh_model()
    state = setup(model, processor, sections(STRATEGIES[name], steps=steps, **kw), "fp")
    batch = batch_for(name)
    losses: list[float] = []
    run(state, lambda i: batch, log=lambda step, m: losses.append(m["loss"]))
    return losses


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_loss_falls_on_a_repeated_batch(name: str) -> None:
    losses = _losses(name, 30, lr=5e-3)
    assert losses[:3] == pytest.approx(GOLDEN_FIRST_LOSSES[name], rel=1e-3)
    assert sum(losses[-10:]) / 10 < 0.85 * sum(losses[:10]) / 10


def _adapter_bytes(tmp: Path, name: str, model: torch.nn.Module) -> bytes:
    return save_adapter(model, tmp / name, META).read_bytes()


def _run_t2v(root: Path | None, stop_after: int | None = None, **kw: object) -> torch.nn.Module:
    model, processor = fresh_model()
    spec = sections(STRATEGIES["text_to_video"], steps=6, lr=5e-3, accumulation=2,
                    scheduler="cosine", warmup=2, checkpoint_every=2, **kw)
    state = setup(model, processor, spec, "fp-a")
    run(state, lambda i: batch_for("text_to_video", seed=i % 3), checkpoint_root=root,
        stop_after=stop_after)
    return state.model


def test_same_seed_same_adapter_bytes(tmp_path: Path) -> None:
    a = _adapter_bytes(tmp_path, "a.safetensors", _run_t2v(None))
    b = _adapter_bytes(tmp_path, "b.safetensors", _run_t2v(None))
    assert a == b
    c = _adapter_bytes(tmp_path, "c.safetensors", _run_t2v(None, seed=7))
    assert a != c


def test_resume_after_interruption_is_byte_identical(tmp_path: Path) -> None:
    uninterrupted = _adapter_bytes(tmp_path, "full.safetensors", _run_t2v(None))
    root = tmp_path / "ckpt"
    _run_t2v(root, stop_after=3)
    resumed_model = _run_t2v(root)
    assert _adapter_bytes(tmp_path, "resumed.safetensors", resumed_model) == uninterrupted


def test_checkpoint_of_other_params_is_ignored(tmp_path: Path) -> None:
    root = tmp_path / "ckpt"
    _run_t2v(root, stop_after=2)
    model, processor = fresh_model()
    state = setup(model, processor, sections(STRATEGIES["text_to_video"], steps=6), "fp-b")
    run(state, lambda i: batch_for("text_to_video"), checkpoint_root=root, stop_after=1)
    assert state.step == 1


def test_nan_loss_stops_with_the_step_and_keeps_the_checkpoint(tmp_path: Path) -> None:
    good = batch_for("text_to_video")
    bad = dataclasses.replace(good, video=torch.full_like(good.video, float("nan")))
    model, processor = fresh_model()
    spec = sections(STRATEGIES["text_to_video"], steps=6, checkpoint_every=2)
    state = setup(model, processor, spec, "fp")
    root = tmp_path / "ckpt"
    weights_at_2: dict[str, torch.Tensor] = {}

    def batch_at(i: int) -> Batch:
        if i == 2:
            weights_at_2.update(adapter_state(state.model, torch.float32))
        return bad if i == 2 else good

    with pytest.raises(NonFiniteLoss, match="at step 3"):
        run(state, batch_at, checkpoint_root=root)
    model2, processor2 = fresh_model()
    resumed = setup(model2, processor2, spec, "fp")
    from aiprod_recipes.training.loop import try_resume
    assert try_resume(resumed, root) and resumed.step == 2
    saved = adapter_state(resumed.model, torch.float32)
    assert all(torch.equal(saved[k], weights_at_2[k]) for k in saved)


def test_gradient_checkpointing_gives_the_same_step() -> None:
    plain = _losses("text_to_video", 3)
    checkpointed = _losses("text_to_video", 3, gradient_checkpointing=True)
    assert checkpointed == pytest.approx(plain, rel=1e-5)


def test_bf16_autocast_runs_close_to_fp32() -> None:
    fp32 = _losses("text_to_video", 2)
    bf16 = _losses("text_to_video", 2, mixed_precision="bf16")
    assert bf16 == pytest.approx(fp32, rel=0.05)


def test_full_fine_tune_trains_every_parameter() -> None:
    model, processor = fresh_model()
    n_params = sum(1 for _ in model.parameters())
    state = setup(model, processor, sections(STRATEGIES["image_to_video"], mode="full"), "fp")
    assert len(state.params) == n_params
    before = state.model.patchify_proj.weight.detach().clone()
    metrics = train_step(state, [batch_for("image_to_video")])
    assert metrics["grad_norm"] > 0
    assert not torch.equal(state.model.patchify_proj.weight, before)


def test_metrics_name_every_required_value() -> None:
    model, processor = fresh_model()
    state = setup(model, processor, sections(STRATEGIES["text_to_video"]), "fp")
    metrics = train_step(state, [batch_for("text_to_video")])
    for key in ("loss", "loss_video", "loss_audio", "lr", "grad_norm"):
        assert key in metrics
    assert any(k.startswith("loss_video_s") for k in metrics)
    assert any(k.startswith("loss_audio_s") for k in metrics)
    assert metrics["loss"] == pytest.approx(metrics["loss_video"] + metrics["loss_audio"])


def test_heldout_losses_are_reproducible_and_change_with_noise() -> None:
    from aiprod_recipes.inference.metrics import ValClip, model_losses
    from aiprod_recipes.training.strategies import strategy_for

    model, processor = fresh_model()
    model.eval()
    clip = ValClip("clip", batch_for("image_to_video"))
    strategy = strategy_for(STRATEGIES["image_to_video"])
    flow = sections().flow
    first = model_losses(model, processor, [clip], strategy, flow, [0.1, 0.9], seed=0)
    again = model_losses(model, processor, [clip], strategy, flow, [0.1, 0.9], seed=0)
    assert first == again
    assert first[0.1][0] != first[0.9][0]
