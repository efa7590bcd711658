"""The flow-matching objective: noising, targets, conditioning masks, losses.

x_t = (1 - s) x0 + s e and the model predicts the velocity v = e - x0. Every token carries
its own level: conditioning tokens (the first latent frame for image-to-video, reference
tokens for IC-LoRA) get s = 0, so they enter the model clean, tell it (through their
timestep embedding) that they are clean, and are left out of the loss. The same per-token
layout is what ltx-core's samplers feed the model at inference (timesteps = sigma x
denoise_mask), so training and sampling see the same inputs.

Tensors here are patchified tokens ``[B, T, D]`` with a boolean ``[B, T]`` mask; nothing
in this module knows about the transformer.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from aiprod_recipes.spec import Flow
from aiprod_recipes.training.timesteps import sample_levels

__all__ = [
    "LEVEL_BUCKETS",
    "Noised",
    "bucket_losses",
    "draw_levels",
    "first_frame_condition",
    "masked_mse",
    "noise_tokens",
    "per_sample_mse",
]

LEVEL_BUCKETS: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
"""Edges of the noise-level buckets the loss is also reported in (a loss that only falls at
high noise learns layout, not detail)."""


@dataclass(frozen=True)
class Noised:
    """One modality after noising.

    ``latent`` is x_t, ``target`` the velocity e - x0, ``timesteps`` the per-token level
    [B, T] (0 on conditioning tokens), ``sigma`` the per-sample level [B] (what the
    cross-modal attention and prompt modulation read), ``loss_mask`` the tokens that count.
    """

    latent: torch.Tensor
    target: torch.Tensor
    timesteps: torch.Tensor
    sigma: torch.Tensor
    loss_mask: torch.Tensor


def noise_tokens(
    x0: torch.Tensor,
    sigma: torch.Tensor,
    condition: torch.Tensor,
    generator: torch.Generator,
) -> Noised:
    """Noise clean tokens ``x0`` [B, T, D] to per-sample levels ``sigma`` [B].

    ``condition`` [B, T] marks tokens kept clean (s = 0) and excluded from the loss. The
    noise is drawn in float32 on the CPU generator and moved, so a run gives the same noise
    on any device.
    """
    if condition.shape != x0.shape[:2]:
        raise ValueError(f"condition mask {tuple(condition.shape)} != tokens {tuple(x0.shape[:2])}")
    noise = torch.randn(x0.shape, generator=generator, dtype=torch.float32).to(x0.device)
    x0f = x0.float()
    timesteps = sigma.float().to(x0.device)[:, None] * (~condition).float()
    s = timesteps[..., None]
    latent = (1.0 - s) * x0f + s * noise
    return Noised(
        latent=latent.to(x0.dtype),
        target=noise - x0f,
        timesteps=timesteps,
        sigma=sigma.float().to(x0.device),
        loss_mask=~condition,
    )


def per_sample_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error per sample [B] over the tokens in ``mask`` (and all channels).

    A sample with no loss tokens gives 0, not NaN.
    """
    err = (pred.float() - target.float()).pow(2).mean(dim=-1)
    m = mask.float()
    return (err * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every token in ``mask`` across the batch (one scalar).

    Tokens, not samples, are averaged: every loss token weighs the same whichever sample it
    is in, so conditioning a sample on its first frame does not up-weight its other frames.
    """
    err = (pred.float() - target.float()).pow(2).mean(dim=-1)
    m = mask.float()
    return (err * m).sum() / m.sum().clamp(min=1.0)


def draw_levels(
    flow: Flow,
    batch_size: int,
    video_tokens: int,
    audio_tokens: int | None,
    independent_audio: bool,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-sample video levels [B] and audio levels [B] (None without audio).

    Independent audio levels make the model learn audio given video at any noise level (and
    the reverse), which is what audio-to-video and video-to-audio sampling need; shared
    levels match plain joint generation. The audio shift uses the audio token count.
    """
    video = sample_levels(batch_size, video_tokens, flow, generator)
    if audio_tokens is None:
        return video, None
    if not independent_audio:
        return video, video.clone()
    return video, sample_levels(batch_size, audio_tokens, flow, generator)


def first_frame_condition(
    batch_size: int,
    tokens: int,
    tokens_per_frame: int,
    probability: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """[B, tokens] mask of first-latent-frame tokens, for each sample with ``probability``.

    Training some samples without the first frame keeps text-to-video working with an
    image-to-video adapter. The coin is always flipped (even at p = 0 or 1) so the
    generator's state does not depend on ``probability``.
    """
    coin = torch.rand(batch_size, generator=generator) < probability
    mask = torch.zeros(batch_size, tokens, dtype=torch.bool)
    mask[:, :tokens_per_frame] = coin[:, None]
    return mask


def bucket_losses(levels: torch.Tensor, losses: torch.Tensor, prefix: str) -> dict[str, float]:
    """Per-sample losses grouped into LEVEL_BUCKETS by their level: ``{name: mean}``.

    Only buckets that hold a sample appear, so a metric logger sees one value per bucket
    that was actually trained at this step.
    """
    out: dict[str, float] = {}
    for lo, hi in itertools.pairwise(LEVEL_BUCKETS):
        inside = (levels >= lo) & (levels < hi) if hi < 1.0 else (levels >= lo)
        if inside.any():
            out[f"{prefix}_s{lo:.1f}-{hi:.1f}"] = float(losses[inside].mean())
    return out
