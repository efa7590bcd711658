"""Periodic validation during training (``eval.every_steps = N``): every N steps the eval
samples are rendered with the current weights and the held-out loss is measured, both
logged through DVCLive at that step.

The samples are evaluate's (``inference.samples``: same prompts, conditions, sampler and
seeds) and the loss is evaluate's (``inference.metrics``: same clips, levels and noise), so
the series during training ends where the final evaluation starts. Each sample lands in
the live folder as an animated preview (a DVC image plot with a step slider) and as the mp4
with its sound.

Validation leaves training untouched: the model is switched to eval mode and back, and the
random state is forked around the work, so a run trains the same weights with or without it.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from aiprod_recipes.inference.metrics import ValClip, level_key, mean, spec_losses
from aiprod_recipes.inference.sampler import Decoded
from aiprod_recipes.inference.samples import DECODERS, SampleSet, render, sample_name
from aiprod_recipes.model.loader import Components
from aiprod_recipes.spec import Spec
from aiprod_recipes.training.live import LiveLog

__all__ = ["VAL_LOSS", "PeriodicValidation"]

VAL_LOSS = "val/loss"
"""The held-out loss as DVCLive logs it (the best kept checkpoint minimises it)."""


@dataclass
class PeriodicValidation:
    """What every validation needs, prepared once before training starts."""

    spec: Spec
    samples: SampleSet
    clips: list[ValClip]
    decoders: Components = dataclasses.field(default_factory=Components)
    """The loaded components holding the video decoder, audio decoder and vocoder (set once
    the model is loaded; see ``wants``)."""

    @property
    def every(self) -> int:
        return self.spec.eval.every_steps

    @property
    def wants(self) -> set[str]:
        """The components to load besides the transformer and the embeddings processor."""
        return set(DECODERS) if self.samples.jobs else set()

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def losses(self, model: torch.nn.Module, processor: torch.nn.Module) -> dict[str, float]:
        """``val/loss`` and ``val/loss_level_<s>`` (nothing without a usable val clip)."""
        if not self.clips:
            return {}
        per_level = spec_losses(model, processor, self.clips, self.spec)
        out = {VAL_LOSS: mean([v for values in per_level.values() for v in values])}
        for level, values in per_level.items():
            out[f"val/{level_key('loss', level)}"] = mean(values)
        return out

    def run(self, model: torch.nn.Module, processor: torch.nn.Module, step: int,
            live: LiveLog) -> dict[str, float]:
        """Validate ``model`` (unwrapped, with its adapter on) at ``step``; log and return
        the held-out metrics."""
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        try:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                metrics = self.losses(model, processor)
                self._samples(model, processor, step, live)
        finally:
            model.train(was_training)
        if metrics:
            live.log(step, metrics)
        return metrics

    def _samples(self, model: torch.nn.Module, processor: torch.nn.Module, step: int,
                 live: LiveLog) -> None:
        if not self.samples.jobs:
            return
        components = dataclasses.replace(self.decoders, transformer=model,
                                         embeddings_processor=processor)
        scratch = Path(tempfile.mkdtemp(prefix="validation-"))

        def publish(k: int, decoded: Decoded) -> None:
            name = sample_name(k)
            live.video(name, step, scratch / f"{name}.mp4")
            live.preview(name, step, decoded.frames, self.samples.requests[k].fps)

        try:
            render(components, self.samples, scratch, ".", with_conditions=False,
                   progress=False, on_sample=publish)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
