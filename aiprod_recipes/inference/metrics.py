"""Held-out flow-matching loss of the base model and of base + adapter on the val split.

For every val clip and every level s in ``eval.loss_levels`` the clip's stored latents are
noised to s with noise from a CPU generator seeded by (eval.seed, clip, s), the same for
both models, and the masked MSE to the velocity target is taken exactly as training takes
it (``training.objective.batch_losses``: video + audio, conditioning tokens excluded).
Image-to-video clips are always conditioned on their first frame here, so the number
measures the task the adapter is for, without a coin flip.

``improvement`` = base - adapter: positive when the adapter fits held-out clips better.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from aiprod_recipes.inference.adapters import adapters_disabled
from aiprod_recipes.spec import Flow, Spec
from aiprod_recipes.training.data import ClipStore
from aiprod_recipes.training.forward import Batch, text_context, tokenize
from aiprod_recipes.training.objective import Generators, batch_losses
from aiprod_recipes.training.strategies import Strategy, strategy_for

__all__ = ["ValClip", "clip_generators", "compare_losses", "evaluate_losses", "level_key",
           "load_val_clips", "mean", "model_losses", "spec_losses"]


@dataclass(frozen=True)
class ValClip:
    """One val clip as the loss reads it."""

    item: str
    batch: Batch


def level_key(prefix: str, level: float) -> str:
    """``loss_base_level_0.1``: the level as written in the spec."""
    return f"{prefix}_level_{level:g}"


def clip_generators(seed: int, item: str, level: float) -> Generators:
    """Generators fixed by (seed, clip, level) alone, so every model sees the same noise."""
    digest = hashlib.sha256(f"{seed}:{item}:{level!r}".encode()).digest()
    base = int.from_bytes(digest[:7], "big")

    def gen(offset: int) -> torch.Generator:
        return torch.Generator(device="cpu").manual_seed(base + offset)

    return Generators(levels=gen(0), noise=gen(1), condition=gen(2))


def load_val_clips(store: ClipStore, val_items: Sequence[str]) -> list[ValClip]:
    """Val clips with every stored input the strategy needs, one batch each (clips the
    latents stage skipped are left out)."""
    return [ValClip(item, store.batch([item])) for item in store.usable(val_items)]


@torch.no_grad()
def model_losses(model: torch.nn.Module, processor: torch.nn.Module, clips: Sequence[ValClip],
                 strategy: Strategy, flow: Flow, levels: Sequence[float],
                 seed: int) -> dict[float, list[float]]:
    """Level -> the loss of each clip (in ``clips`` order) for one model."""
    device = next(model.parameters()).device
    strategy = strategy.for_heldout()
    out: dict[float, list[float]] = {level: [] for level in levels}
    for clip in clips:
        batch = clip.batch.to(device)
        context = text_context(processor, batch)
        tokens = tokenize(batch, strategy.with_audio)
        for level in levels:
            level_t = torch.tensor([level], dtype=torch.float32)
            audio_level = level_t.clone() if tokens.audio is not None else None
            losses = batch_losses(model, tokens, context, strategy, flow,
                                  clip_generators(seed, clip.item, level),
                                  levels=(level_t, audio_level))
            out[level].append(float(losses.total))
    return out


def mean(values: Sequence[float]) -> float:
    """The mean of some losses; nan for none (a level with no usable clip)."""
    return float(sum(values) / len(values)) if values else float("nan")


def evaluate_losses(model: torch.nn.Module, processor: torch.nn.Module,
                    clips: Sequence[ValClip], spec: Spec) -> dict[str, float | int]:
    """The flat metrics dict for a model with one attached adapter: ``loss_base``,
    ``loss_adapter``, ``loss_{base,adapter}_level_<s>``, ``improvement``, ``num_val_clips``.

    With no val clip the losses are NaN (written as null in JSON)."""
    with adapters_disabled(model):
        base = spec_losses(model, processor, clips, spec)
    return compare_losses(base, spec_losses(model, processor, clips, spec), spec, len(clips))


def spec_losses(model: torch.nn.Module, processor: torch.nn.Module,
                clips: Sequence[ValClip], spec: Spec) -> dict[float, list[float]]:
    """``model_losses`` with the spec's strategy, flow, levels and seed."""
    return model_losses(model, processor, clips, strategy_for(spec.strategy), spec.flow,
                        list(spec.eval.loss_levels), spec.eval.seed)


def compare_losses(base: dict[float, list[float]], tuned: dict[float, list[float]],
                   spec: Spec, num_clips: int) -> dict[str, float | int]:
    """The metrics dict from per-level losses of the base and of the trained model."""
    levels = list(spec.eval.loss_levels)
    out: dict[str, float | int] = {
        "loss_base": mean([v for level in levels for v in base[level]]),
        "loss_adapter": mean([v for level in levels for v in tuned[level]]),
    }
    for level in levels:
        out[level_key("loss_base", level)] = mean(base[level])
    for level in levels:
        out[level_key("loss_adapter", level)] = mean(tuned[level])
    out["improvement"] = out["loss_base"] - out["loss_adapter"]
    out["num_val_clips"] = num_clips
    return out
