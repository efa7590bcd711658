"""Optimizers (AdamW, bitsandbytes 8-bit AdamW), learning-rate schedules and clipping.

8-bit AdamW keeps both Adam moments in block-wise quantized uint8 (about 2 bytes per
parameter instead of 8): the difference between a LoRA on a 19B base fitting a 24 GB card
or not. bitsandbytes 0.50 runs it on the CPU too; where its backend is missing the error
says so instead of failing inside the first step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR

from aiprod_recipes.spec import Optim

__all__ = [
    "EightBitUnavailable",
    "build_optimizer",
    "build_scheduler",
    "clip_gradients",
    "lr_factor",
]


class EightBitUnavailable(RuntimeError):
    """bitsandbytes' 8-bit AdamW cannot run on this machine."""


def _adamw8bit(params: list[torch.nn.Parameter], optim: Optim) -> torch.optim.Optimizer:
    try:
        import bitsandbytes as bnb

        opt = bnb.optim.AdamW8bit(params, lr=optim.learning_rate, betas=optim.betas,
                                  eps=optim.eps, weight_decay=optim.weight_decay)
    except Exception as exc:
        device = params[0].device.type if params else "cpu"
        raise EightBitUnavailable(
            f"optim.optimizer = 'adamw8bit': bitsandbytes' 8-bit AdamW is not available for "
            f"device {device!r} ({type(exc).__name__}: {exc}). It needs CUDA, or a "
            f"bitsandbytes build with a {device} backend; use optim.optimizer = 'adamw'."
        ) from exc
    return opt


def build_optimizer(params: Iterable[torch.nn.Parameter], optim: Optim) -> torch.optim.Optimizer:
    """AdamW or 8-bit AdamW over ``params`` with the spec's hyper-parameters."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters: nothing for the optimizer to update")
    if optim.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=optim.learning_rate, betas=optim.betas,
                                 eps=optim.eps, weight_decay=optim.weight_decay)
    if optim.optimizer == "adamw8bit":
        return _adamw8bit(params, optim)
    raise ValueError(f"optim.optimizer: unknown optimizer {optim.optimizer!r}")


def lr_factor(step: int, schedule: str, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the peak learning rate after ``step`` optimizer steps.

    Linear warm-up from 1/(warmup+1) (never 0: a zero-lr first step would waste a batch),
    then constant, linear decay to 0, or cosine decay to 0 at ``total_steps``.
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if schedule == "constant":
        return 1.0
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"optim.scheduler: unknown schedule {schedule!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, optim: Optim, total_steps: int
                    ) -> LambdaLR:
    """A LambdaLR stepping once per optimizer step.

    The lambda is a plain closure, so the scheduler's state_dict holds only numbers (no
    callable is pickled); the lambda is rebuilt from the spec on resume.
    """
    fn: Callable[[int], float] = lambda step: lr_factor(  # noqa: E731
        step, optim.scheduler, optim.warmup_steps, total_steps)
    return LambdaLR(optimizer, lr_lambda=fn)


def clip_gradients(params: Iterable[torch.nn.Parameter], max_norm: float) -> float:
    """Clip the global gradient norm to ``max_norm`` (0: measure only); return the norm
    before clipping (the number worth logging: it shows spikes the clip hides)."""
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return 0.0
    limit = max_norm if max_norm > 0 else float("inf")
    return float(torch.nn.utils.clip_grad_norm_(grads, limit))
