"""Training strategies, one file each, chosen by the spec's ``strategy.type``.

``strategy_for(spec.strategy)`` turns the spec's Struct into its strategy object. A new
strategy: its Struct in ``spec.py`` (added to the ``Strategy`` union), a module here with a
class implementing ``base.Strategy``, its line in ``STRATEGIES``, and its test.
"""

from __future__ import annotations

from typing import Any

from aiprod_recipes.training.strategies.base import (
    SampleCondition,
    Strategy,
    text_condition,
)
from aiprod_recipes.training.strategies.image_to_video import ImageToVideoStrategy
from aiprod_recipes.training.strategies.text_to_video import TextToVideoStrategy
from aiprod_recipes.training.strategies.video_to_video import VideoToVideoStrategy

__all__ = ["STRATEGIES", "SampleCondition", "Strategy", "strategy_for", "text_condition"]

STRATEGIES: dict[str, type] = {cls.tag: cls for cls in (TextToVideoStrategy, ImageToVideoStrategy,
                                                        VideoToVideoStrategy)}
"""The spec's strategy tag -> its strategy class."""


def strategy_for(config: Any) -> Strategy:
    """The strategy object of a spec's ``strategy`` section."""
    tag = config.__struct_config__.tag
    if tag not in STRATEGIES:
        raise ValueError(f"strategy.type {tag!r} has no implementation; known: "
                         f"{', '.join(sorted(STRATEGIES))}")
    return STRATEGIES[tag](config)
