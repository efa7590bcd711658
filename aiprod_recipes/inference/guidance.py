"""Classifier-free guidance and spatio-temporal guidance, as ltx-core's guiders combine them.

One denoising step runs the transformer up to three times: with the prompt (cond), with the
negative prompt (uncond, when ``cfg_scale != 1``) and with the prompt while self-attention
is skipped in ``stg_blocks`` (perturbed, when ``stg_scale != 0``). The denoised predictions
are then combined by ltx-core's ``MultiModalGuider``:

    x0 = cond + (cfg - 1) (cond - uncond) + stg (cond - perturbed)

The passes run one after another rather than as one batch of three, so peak activation
memory on the 19B model stays that of a single pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from ltx_core.components.guiders import MultiModalGuider, MultiModalGuiderParams
from ltx_core.guidance.perturbations import (
    BatchedPerturbationConfig,
    Perturbation,
    PerturbationConfig,
    PerturbationType,
)

from aiprod_recipes.spec import Eval

__all__ = ["Guidance", "stg_perturbations"]


@dataclass(frozen=True)
class Guidance:
    """Guidance scales: ``cfg_scale`` 1 and ``stg_scale`` 0 turn the extra passes off."""

    cfg_scale: float = 1.0
    stg_scale: float = 0.0
    stg_blocks: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.cfg_scale < 1.0:
            raise ValueError(f"cfg_scale must be >= 1, got {self.cfg_scale}")
        if self.stg_scale < 0.0:
            raise ValueError(f"stg_scale must be >= 0, got {self.stg_scale}")
        if self.stg_scale and not self.stg_blocks:
            raise ValueError("stg_scale > 0 needs at least one block in stg_blocks")

    @staticmethod
    def from_eval(cfg: Eval, cfg_scale: float | None = None,
                  stg_scale: float | None = None) -> Guidance:
        """The spec's guidance, with the scales a command line overrides (None: keep)."""
        return Guidance(cfg.cfg_scale if cfg_scale is None else float(cfg_scale),
                        cfg.stg_scale if stg_scale is None else float(stg_scale),
                        tuple(cfg.stg_blocks))

    def guider(self) -> MultiModalGuider:
        return MultiModalGuider(MultiModalGuiderParams(
            cfg_scale=self.cfg_scale, stg_scale=self.stg_scale, stg_blocks=list(self.stg_blocks)))

    def check_blocks(self, num_blocks: int) -> None:
        """STG blocks must exist in the transformer (a silent no-op would be no guidance)."""
        if not self.uses_stg:
            return
        bad = [b for b in self.stg_blocks if not 0 <= b < num_blocks]
        if bad:
            raise ValueError(f"stg_blocks {bad} out of range: the transformer has {num_blocks} "
                             f"blocks (0..{num_blocks - 1})")

    @property
    def uses_cfg(self) -> bool:
        return self.guider().do_unconditional_generation()

    @property
    def uses_stg(self) -> bool:
        return self.guider().do_perturbed_generation()

    def combine(self, cond: torch.Tensor, uncond: torch.Tensor | None,
                perturbed: torch.Tensor | None) -> torch.Tensor:
        """The guided prediction from the passes that ran (missing ones contribute 0)."""
        return self.guider().calculate(
            cond,
            uncond if uncond is not None else 0.0,
            perturbed if perturbed is not None else 0.0,
            0.0,
        )


def stg_perturbations(blocks: tuple[int, ...], batch_size: int) -> BatchedPerturbationConfig:
    """Skip video and audio self-attention in ``blocks`` for every sample of the batch."""
    config = PerturbationConfig([
        Perturbation(PerturbationType.SKIP_VIDEO_SELF_ATTN, list(blocks)),
        Perturbation(PerturbationType.SKIP_AUDIO_SELF_ATTN, list(blocks)),
    ])
    return BatchedPerturbationConfig([config] * batch_size)
