"""The strategy protocol: everything that differs between text-to-video, image-to-video and
video-to-video training, in one object per strategy.

The loop, the held-out loss and the evaluate stage ask the strategy instead of checking
which one it is, so a new strategy (audio-to-video, extension, ...) is one file here, its
spec Struct in ``spec.py`` and an entry in the table of ``strategies/__init__.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch

from aiprod_recipes.training.forward import Tokens


@dataclass(frozen=True)
class SampleCondition:
    """What a validation sample is generated from, besides its prompt: its size, and the
    conditioning latents the strategy puts in (none for text-to-video)."""

    width: int
    height: int
    frames: int
    image_latent: torch.Tensor | None = None
    """The first latent frame [128, 1, H/32, W/32] (image-to-video)."""
    reference: torch.Tensor | None = None
    """The reference latent [128, F', H'/d, W'/d] (IC-LoRA)."""
    reference_downscale: int = 1


class Strategy(Protocol):
    """How a strategy trains and is evaluated."""

    tag: ClassVar[str]
    """The spec's ``strategy.type``."""
    with_audio: bool
    independent_audio_timestep: bool
    uses_reference: bool
    """Batches carry reference latents (the reference stage's output)."""
    condition_stage: str | None
    """The stage whose stored latents hold a val clip's sample condition, if any."""

    def condition_mask(self, tokens: Tokens, generator: torch.Generator) -> torch.Tensor:
        """[B, Tv] True on video tokens kept clean and out of the loss."""
        ...

    def for_heldout(self) -> Strategy:
        """The strategy the held-out loss uses: conditioning without coin flips, so the
        number measures the task the adapter is for and is the same for every model."""
        ...

    def sample_condition(self, stored: dict[str, torch.Tensor], frames: int,
                         reference_downscale: int) -> SampleCondition:
        """A val clip's sample condition from its stored latents (of ``condition_stage``)."""
        ...


@dataclass(frozen=True)
class BaseStrategy:
    """What every strategy shares: the spec Struct it was made from and the audio branch."""

    config: Any
    condition_stage: ClassVar[str | None] = None

    @property
    def uses_reference(self) -> bool:
        """Declared by the spec's Struct, which its cross-field rules need too."""
        return bool(self.config.uses_reference)

    @property
    def with_audio(self) -> bool:
        return bool(self.config.with_audio)

    @property
    def independent_audio_timestep(self) -> bool:
        return bool(self.config.independent_audio_timestep)

    def condition_mask(self, tokens: Tokens, generator: torch.Generator) -> torch.Tensor:
        return tokens.reference_mask()

    def for_heldout(self) -> Strategy:
        return self  # type: ignore[return-value]


def text_condition(width: int, height: int, frames: int) -> SampleCondition:
    """A sample generated from its prompt alone."""
    return SampleCondition(width=width, height=height, frames=frames)
