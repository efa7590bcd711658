"""Noise-level samplers: the shift matches ltx-core's scheduler; seeded; in range."""

from __future__ import annotations

import torch
from ltx_core.components.schedulers import LTX2Scheduler

from aiprod_recipes.spec import Flow
from aiprod_recipes.training.timesteps import (
    MIN_LEVEL,
    apply_shift,
    sample_levels,
    token_shift,
)


def test_shift_matches_ltx_core_scheduler() -> None:
    flow = Flow()
    for tokens in (1024, 2500, 4096, 6000):
        expected = LTX2Scheduler().execute(steps=10, stretch=False,
                                           default_number_of_tokens=tokens)
        grid = torch.linspace(1.0, 0.0, 11)[:-1]
        ours = apply_shift(grid, token_shift(tokens, flow))
        torch.testing.assert_close(ours.float(), expected[:-1], rtol=1e-5, atol=1e-6)


def test_shift_interpolates_between_anchors() -> None:
    flow = Flow(base_shift=0.5, max_shift=1.5, min_tokens=100, max_tokens=300)
    assert token_shift(100, flow) == 0.5
    assert token_shift(300, flow) == 1.5
    assert abs(token_shift(200, flow) - 1.0) < 1e-12


def test_seeded_and_in_range() -> None:
    flow = Flow()
    a = sample_levels(1000, 2048, flow, torch.Generator().manual_seed(3))
    b = sample_levels(1000, 2048, flow, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert a.min() >= MIN_LEVEL and a.max() <= 1 - MIN_LEVEL


def test_more_tokens_means_more_noise() -> None:
    flow = Flow()
    small = sample_levels(4000, 1024, flow, torch.Generator().manual_seed(0)).mean()
    large = sample_levels(4000, 4096, flow, torch.Generator().manual_seed(0)).mean()
    assert large > small + 0.1


def test_uniform_sampler() -> None:
    levels = sample_levels(20000, 4096, Flow(timestep_sampler="uniform"),
                           torch.Generator().manual_seed(0))
    assert abs(levels.mean().item() - 0.5) < 0.01
    assert levels.min() >= MIN_LEVEL


def test_stretch_reaches_the_low_noise_end() -> None:
    plain = sample_levels(4000, 4096, Flow(), torch.Generator().manual_seed(1))
    stretched = sample_levels(4000, 4096, Flow(stretch=True), torch.Generator().manual_seed(1))
    assert (stretched < 0.1).float().mean() > (plain < 0.1).float().mean() + 0.01
    assert torch.all(torch.diff(stretched[torch.argsort(plain)]) >= 0)
