"""Optimizers, schedules, clipping; bitsandbytes' 8-bit AdamW on the CPU."""

from __future__ import annotations

import math

import bitsandbytes as bnb
import pytest
import torch

from aiprod_recipes.spec import Optim
from aiprod_recipes.training.optim import (
    EightBitUnavailable,
    build_optimizer,
    build_scheduler,
    clip_gradients,
    lr_factor,
)


def _param(seed: int = 0) -> torch.nn.Parameter:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.Parameter(torch.randn(128, 64, generator=g))


def test_schedules_with_warmup() -> None:
    assert [lr_factor(s, "constant", 3, 10) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert lr_factor(3, "linear", 3, 13) == 1.0
    assert lr_factor(8, "linear", 3, 13) == 0.5
    assert lr_factor(13, "linear", 3, 13) == 0.0
    assert math.isclose(lr_factor(8, "cosine", 3, 13), 0.5)
    assert lr_factor(13, "cosine", 3, 13) == 0.0


def test_scheduler_drives_the_optimizer_lr() -> None:
    p = _param()
    opt = build_optimizer([p], Optim(learning_rate=0.1, scheduler="linear", warmup_steps=1))
    sched = build_scheduler(opt, Optim(learning_rate=0.1, scheduler="linear", warmup_steps=1), 5)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert [round(x, 6) for x in lrs] == [0.05, 0.1, 0.075, 0.05, 0.025]
    assert all(v is None or isinstance(v, (int, float, list, bool)) for v in
               sched.state_dict().values())


def test_clip_returns_the_norm_before_clipping() -> None:
    p = torch.nn.Parameter(torch.zeros(4))
    p.grad = torch.tensor([3.0, 4.0, 0.0, 0.0])
    assert clip_gradients([p], 1.0) == pytest.approx(5.0)
    assert p.grad.norm().item() == pytest.approx(1.0, rel=1e-4)
    p.grad = torch.tensor([3.0, 4.0, 0.0, 0.0])
    assert clip_gradients([p], 0.0) == pytest.approx(5.0)
    assert p.grad.norm().item() == pytest.approx(5.0)


def test_adamw8bit_steps_on_cpu_with_uint8_state() -> None:
    p8, p32 = _param(), _param()
    opt8 = build_optimizer([p8], Optim(optimizer="adamw8bit", learning_rate=1e-2))
    opt32 = build_optimizer([p32], Optim(optimizer="adamw", learning_rate=1e-2))
    assert isinstance(opt8, bnb.optim.AdamW8bit)
    for step in range(3):
        g = torch.randn(p8.shape, generator=torch.Generator().manual_seed(step))
        p8.grad, p32.grad = g.clone(), g.clone()
        opt8.step()
        opt32.step()
    state = opt8.state[p8]
    assert state["state1"].dtype == torch.uint8 and state["state2"].dtype == torch.uint8
    moved = (p8 - _param()).abs().mean()
    assert moved > 0.01
    assert (p8 - p32).abs().mean() < 0.1 * moved


def test_adamw8bit_unavailable_says_what_is_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no kernel for this device")

    monkeypatch.setattr(bnb.optim, "AdamW8bit", broken)
    with pytest.raises(EightBitUnavailable, match="needs CUDA") as info:
        build_optimizer([_param()], Optim(optimizer="adamw8bit"))
    assert "optim.optimizer = 'adamw'" in str(info.value)


def test_no_trainable_parameters_is_an_error() -> None:
    frozen = _param().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable"):
        build_optimizer([frozen], Optim())
