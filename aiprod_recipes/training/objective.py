"""One batch through the model to per-modality flow-matching losses, per strategy.

Where the strategy enters: which tokens are conditioning (clean, no loss) and whether the
audio branch runs and with which noise level. Training and the held-out evaluation loss
both go through ``batch_losses``; evaluation passes fixed levels instead of sampling them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from aiprod_recipes.model.text import TextContext
from aiprod_recipes.spec import Flow, ImageToVideo, Strategy, VideoToVideo
from aiprod_recipes.training.flow import (
    draw_levels,
    first_frame_condition,
    masked_mse,
    noise_tokens,
    per_sample_mse,
)
from aiprod_recipes.training.forward import Batch, Tokens, predict, text_context, tokenize

__all__ = [
    "Generators",
    "Losses",
    "batch_losses",
    "condition_mask",
    "heldout_losses",
    "make_generators",
]


@dataclass(frozen=True)
class Generators:
    """The seeded generators of a run: noise levels, noise, conditioning coin flips."""

    levels: torch.Generator
    noise: torch.Generator
    condition: torch.Generator

    def as_dict(self) -> dict[str, torch.Generator]:
        return {"levels": self.levels, "noise": self.noise, "condition": self.condition}


def make_generators(seed: int) -> Generators:
    """Independent CPU generators derived from one seed (CPU so runs replay on any device)."""
    def gen(offset: int) -> torch.Generator:
        return torch.Generator(device="cpu").manual_seed(seed * 1000 + offset)
    return Generators(levels=gen(1), noise=gen(2), condition=gen(3))


@dataclass(frozen=True)
class Losses:
    """Scalar losses (total = video + audio) and per-sample values with their levels."""

    total: torch.Tensor
    video: torch.Tensor
    audio: torch.Tensor | None
    video_levels: torch.Tensor
    video_per_sample: torch.Tensor
    audio_levels: torch.Tensor | None
    audio_per_sample: torch.Tensor | None


def condition_mask(strategy: Strategy, tokens: Tokens, generator: torch.Generator
                   ) -> torch.Tensor:
    """[B, Tv] True on tokens kept clean and out of the loss, as the strategy says."""
    mask = tokens.reference_mask()
    if isinstance(strategy, VideoToVideo) and tokens.reference_count == 0:
        raise ValueError("strategy video_to_video (IC-LoRA) needs reference latents in the batch")
    if isinstance(strategy, ImageToVideo):
        first = first_frame_condition(mask.shape[0], tokens.target_count,
                                      tokens.tokens_per_frame, strategy.first_frame_p, generator)
        mask[:, : tokens.target_count] |= first
    return mask


def batch_losses(
    model: torch.nn.Module,
    tokens: Tokens,
    context: TextContext,
    strategy: Strategy,
    flow: Flow,
    generators: Generators,
    levels: tuple[torch.Tensor, torch.Tensor | None] | None = None,
) -> Losses:
    """Noise ``tokens``, predict velocities, and return the masked MSE per modality.

    ``levels`` (video [B], audio [B] or None) overrides sampling, for held-out losses at
    fixed noise levels.
    """
    batch = tokens.video.shape[0]
    has_audio = tokens.audio is not None
    if levels is None:
        levels = draw_levels(flow, batch, tokens.target_count,
                             tokens.audio.shape[1] if has_audio else None,
                             strategy.independent_audio_timestep, generators.levels)
    video_levels, audio_levels = levels
    cond = condition_mask(strategy, tokens, generators.condition).to(tokens.video.device)
    video = noise_tokens(tokens.video, video_levels, cond, generators.noise)
    audio = None
    if has_audio:
        if audio_levels is None:
            raise ValueError("audio tokens need audio noise levels")
        no_cond = torch.zeros(tokens.audio.shape[:2], dtype=torch.bool, device=tokens.audio.device)
        audio = noise_tokens(tokens.audio, audio_levels, no_cond, generators.noise)
    pred_video, pred_audio = predict(model, tokens, context, video, audio)
    video_loss = masked_mse(pred_video, video.target, video.loss_mask)
    total = video_loss
    audio_loss = audio_ps = None
    if audio is not None and pred_audio is not None:
        audio_loss = masked_mse(pred_audio, audio.target, audio.loss_mask)
        audio_ps = per_sample_mse(pred_audio, audio.target, audio.loss_mask).detach()
        total = total + audio_loss
    return Losses(
        total=total,
        video=video_loss,
        audio=audio_loss,
        video_levels=video_levels.detach().cpu(),
        video_per_sample=per_sample_mse(pred_video, video.target, video.loss_mask).detach().cpu(),
        audio_levels=None if audio_levels is None or audio is None else audio_levels.cpu(),
        audio_per_sample=None if audio_ps is None else audio_ps.cpu(),
    )


def heldout_losses(
    model: torch.nn.Module,
    processor: torch.nn.Module,
    batch: Batch,
    strategy: Strategy,
    flow: Flow,
    level: float,
    seed: int,
) -> Losses:
    """Validation losses of ``batch`` with every sample (and audio) at noise ``level``.

    Fixed levels and a fixed seed make held-out numbers comparable between runs and
    adapters; the caller sets eval mode (dropout off) and may wrap this in no_grad.
    """
    tokens = tokenize(batch, strategy.with_audio)
    context = text_context(processor, batch)
    n = tokens.video.shape[0]
    levels = torch.full((n,), float(level))
    audio_levels = levels.clone() if tokens.audio is not None else None
    return batch_losses(model, tokens, context, strategy, flow, make_generators(seed),
                        levels=(levels, audio_levels))
