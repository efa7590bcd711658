"""Image-to-video: the first latent frame is the condition (timestep 0, no loss) for a share
``first_frame_p`` of the samples; validation samples start from a val clip's first latent
frame, exactly what training conditions on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import msgspec
import torch

from aiprod_recipes.names import LATENTS
from aiprod_recipes.training.flow import first_frame_condition
from aiprod_recipes.training.forward import Tokens
from aiprod_recipes.training.strategies.base import BaseStrategy, SampleCondition, Strategy


@dataclass(frozen=True)
class ImageToVideoStrategy(BaseStrategy):
    tag: ClassVar[str] = "image_to_video"
    condition_stage: ClassVar[str | None] = LATENTS

    def condition_mask(self, tokens: Tokens, generator: torch.Generator) -> torch.Tensor:
        mask = tokens.reference_mask()
        first = first_frame_condition(mask.shape[0], tokens.target_count,
                                      tokens.tokens_per_frame, self.config.first_frame_p,
                                      generator)
        mask[:, : tokens.target_count] |= first
        return mask

    def for_heldout(self) -> Strategy:
        return ImageToVideoStrategy(msgspec.structs.replace(self.config, first_frame_p=1.0))

    def sample_condition(self, stored: dict[str, torch.Tensor], frames: int,
                         reference_downscale: int) -> SampleCondition:
        latent = stored["video"].float()
        _, _, h, w = latent.shape
        return SampleCondition(width=w * 32, height=h * 32, frames=frames,
                               image_latent=latent[:, :1])
