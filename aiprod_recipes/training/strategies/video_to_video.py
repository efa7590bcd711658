"""Video-to-video (IC-LoRA): reference tokens are appended after the target's at timestep 0
and carry no loss; validation samples are generated from a val clip's reference latent, at
that clip's size."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from aiprod_recipes.names import REFERENCE
from aiprod_recipes.training.forward import Tokens
from aiprod_recipes.training.strategies.base import BaseStrategy, SampleCondition


@dataclass(frozen=True)
class VideoToVideoStrategy(BaseStrategy):
    tag: ClassVar[str] = "video_to_video"
    condition_stage: ClassVar[str | None] = REFERENCE

    def condition_mask(self, tokens: Tokens, generator: torch.Generator) -> torch.Tensor:
        if tokens.reference_count == 0:
            raise ValueError(
                "strategy video_to_video (IC-LoRA) needs reference latents in the batch")
        return tokens.reference_mask()

    def sample_condition(self, stored: dict[str, torch.Tensor], frames: int,
                         reference_downscale: int) -> SampleCondition:
        ref = stored["video"].float()
        d = reference_downscale
        _, f, h, w = ref.shape
        return SampleCondition(width=w * 32 * d, height=h * 32 * d, frames=8 * (f - 1) + 1,
                               reference=ref, reference_downscale=d)
