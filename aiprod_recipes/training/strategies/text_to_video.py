"""Text-to-video (optionally joint audio-video): every video token is generated and carries
loss; samples are generated from the prompt alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from aiprod_recipes.training.strategies.base import BaseStrategy


@dataclass(frozen=True)
class TextToVideoStrategy(BaseStrategy):
    tag: ClassVar[str] = "text_to_video"
