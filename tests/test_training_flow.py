"""Flow matching: x_t, targets, conditioning tokens at s = 0, masked losses."""

from __future__ import annotations

import torch

from aiprod_recipes.spec import Flow
from aiprod_recipes.training.flow import (
    bucket_losses,
    draw_levels,
    first_frame_condition,
    masked_mse,
    noise_tokens,
)


def test_noise_formula_and_conditioning() -> None:
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 6, 4, generator=g)
    cond = torch.zeros(2, 6, dtype=torch.bool)
    cond[0, :2] = True
    sigma = torch.tensor([0.3, 0.8])
    noised = noise_tokens(x0, sigma, cond, torch.Generator().manual_seed(1))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(noised.target, noise - x0)
    torch.testing.assert_close(noised.latent[1], 0.2 * x0[1] + 0.8 * noise[1])
    torch.testing.assert_close(noised.latent[0, :2], x0[0, :2])
    assert torch.all(noised.timesteps[0, :2] == 0)
    assert torch.allclose(noised.timesteps[0, 2:], torch.tensor(0.3))
    assert torch.equal(noised.loss_mask, ~cond)


def test_masked_mse_ignores_conditioning_tokens() -> None:
    target = torch.zeros(1, 4, 2)
    pred = torch.tensor([[[100.0, 100.0], [1.0, 1.0], [1.0, 1.0], [3.0, 3.0]]])
    mask = torch.tensor([[False, True, True, True]])
    assert abs(masked_mse(pred, target, mask).item() - (1 + 1 + 9) / 3) < 1e-6


def test_audio_levels_independent_or_shared() -> None:
    flow = Flow()
    v, a = draw_levels(flow, 4, 100, 50, True, torch.Generator().manual_seed(0))
    assert a is not None and not torch.equal(v, a)
    v, a = draw_levels(flow, 4, 100, 50, False, torch.Generator().manual_seed(0))
    assert a is not None and torch.equal(v, a)
    v, a = draw_levels(flow, 4, 100, None, True, torch.Generator().manual_seed(0))
    assert a is None


def test_first_frame_condition() -> None:
    always = first_frame_condition(3, 12, 4, 1.0, torch.Generator().manual_seed(0))
    assert always[:, :4].all() and not always[:, 4:].any()
    never = first_frame_condition(3, 12, 4, 0.0, torch.Generator().manual_seed(0))
    assert not never.any()


def test_bucket_losses() -> None:
    out = bucket_losses(torch.tensor([0.1, 0.15, 0.95]), torch.tensor([1.0, 3.0, 5.0]), "l")
    assert out == {"l_s0.0-0.2": 2.0, "l_s0.8-1.0": 5.0}
