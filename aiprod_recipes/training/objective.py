"""One batch through the model to per-modality flow-matching losses.

Where the strategy enters (``strategies``): which tokens are conditioning (clean, no loss)
and whether the audio branch runs and with which noise level. Training and the held-out
evaluation loss both go through ``batch_losses``; evaluation passes fixed levels instead of
sampling them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from aiprod_recipes.model.text import TextContext
from aiprod_recipes.spec import Flow
from aiprod_recipes.training.flow import draw_levels, masked_mse, noise_tokens, per_sample_mse
from aiprod_recipes.training.forward import Tokens, predict
from aiprod_recipes.training.strategies import Strategy

__all__ = [
    "Generators",
    "Losses",
    "batch_losses",
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
    cond = strategy.condition_mask(tokens, generators.condition).to(tokens.video.device)
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

