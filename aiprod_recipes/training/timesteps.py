"""Noise-level samplers for flow-matching training.

A noise level ``s`` in (0, 1) is drawn per sample (per modality). Which levels the model sees
most decides what it learns: LTX-2 samples with a token-count-dependent shift towards high
noise, because large videos keep their structure at noise levels that would erase a small
one. The shift is the one ltx-core's ``LTX2Scheduler`` applies to inference sigmas (a line
through (min_tokens, base_shift) and (max_tokens, max_shift), then
``s' = e^mu / (e^mu + (1/s - 1))``), so training and sampling agree on the noise scale.

Every sampler takes an explicit ``torch.Generator`` so a run is reproducible and resumable
(the generator's state is checkpointed).
"""

from __future__ import annotations

import math

import torch

from aiprod_recipes.spec import Flow

__all__ = [
    "MIN_LEVEL",
    "apply_shift",
    "sample_levels",
    "sample_shifted_logit_normal",
    "sample_uniform",
    "stretch_levels",
    "token_shift",
]

MIN_LEVEL = 1e-3
"""Levels are kept in [MIN_LEVEL, 1 - MIN_LEVEL]: s = 0 means "clean, no loss" in this
package (conditioning tokens), so a sampled level must never collide with it."""

_STRETCH_QUANTILES = (0.005, 0.995)


def token_shift(tokens: int, flow: Flow) -> float:
    """The shift mu for a sequence of ``tokens`` tokens, as in ltx-core's LTX2Scheduler.

    The line through (min_tokens, base_shift) and (max_tokens, max_shift) is extrapolated
    outside that range, exactly like the scheduler does, so a clip larger than max_tokens is
    trained at the noise scale it will be sampled at.
    """
    slope = (flow.max_shift - flow.base_shift) / (flow.max_tokens - flow.min_tokens)
    return flow.base_shift + slope * (tokens - flow.min_tokens)


def apply_shift(levels: torch.Tensor, mu: float) -> torch.Tensor:
    """SD3/Flux time shift ``e^mu / (e^mu + (1/s - 1))`` (ltx-core's flux_time_shift, power 1)."""
    e_mu = math.exp(mu)
    return e_mu / (e_mu + (1.0 / levels - 1.0))


def sample_uniform(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` levels uniform in [MIN_LEVEL, 1 - MIN_LEVEL]."""
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    return (MIN_LEVEL + (1.0 - 2.0 * MIN_LEVEL) * u).float()


def sample_shifted_logit_normal(
    n: int, tokens: int, flow: Flow, generator: torch.Generator
) -> torch.Tensor:
    """``n`` levels sigmoid(N(logit_mean, logit_std)) shifted by ``token_shift(tokens)``.

    Shifting a logit-normal sample by the flux formula is the same as adding mu to the
    logit; the formula is kept to mirror ltx-core's scheduler.
    """
    z = torch.randn(n, generator=generator, dtype=torch.float64)
    base = torch.sigmoid(flow.logit_mean + flow.logit_std * z)
    shifted = apply_shift(base.clamp(1e-12, 1.0 - 1e-12), token_shift(tokens, flow))
    return shifted.clamp(MIN_LEVEL, 1.0 - MIN_LEVEL).float()


def stretch_levels(levels: torch.Tensor, tokens: int, flow: Flow) -> torch.Tensor:
    """Map the sampler's central 99% onto [MIN_LEVEL, 1] so both ends get trained.

    A strong shift squeezes almost every sample towards s = 1 and leaves the low-noise end
    (fine detail) untrained. The quantiles of the shifted logit-normal are known in closed
    form, so the stretch is a fixed affine map per token count, not a batch statistic (a
    batch statistic would make one sample's level depend on the others).
    """
    mu = token_shift(tokens, flow)
    normal = torch.distributions.Normal(0.0, 1.0)
    q = normal.icdf(torch.tensor(_STRETCH_QUANTILES, dtype=torch.float64))
    lo, hi = torch.sigmoid(flow.logit_mean + flow.logit_std * q + mu).tolist()
    stretched = MIN_LEVEL + (levels.double() - lo) * (1.0 - MIN_LEVEL) / (hi - lo)
    return stretched.clamp(MIN_LEVEL, 1.0 - MIN_LEVEL).float()


def sample_levels(n: int, tokens: int, flow: Flow, generator: torch.Generator) -> torch.Tensor:
    """``n`` noise levels for a sequence of ``tokens`` tokens, as ``flow`` asks.

    ``flow.stretch`` applies to the shifted logit-normal only: uniform levels already cover
    the whole range.
    """
    if flow.timestep_sampler == "uniform":
        levels = sample_uniform(n, generator)
    elif flow.timestep_sampler == "shifted_logit_normal":
        levels = sample_shifted_logit_normal(n, tokens, flow, generator)
    else:
        raise ValueError(f"flow.timestep_sampler: unknown sampler {flow.timestep_sampler!r}")
    if flow.stretch and flow.timestep_sampler == "shifted_logit_normal":
        levels = stretch_levels(levels, tokens, flow)
    return levels
