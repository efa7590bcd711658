"""The sampler on the tiny model: every mode writes a playable mp4 with sound, a seed gives
identical bytes, guidance changes the result, conditioning tokens stay clean."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from aiprod_recipes.inference.guidance import Guidance
from aiprod_recipes.inference.sampler import (
    Request,
    encode_image,
    generate,
    sample_latents,
    sigmas_for,
)
from aiprod_recipes.model.text import PromptFeatures, encode_captions
from aiprod_recipes.model.vae import encode_video
from tests.model_fixtures import tiny_components  # noqa: F401

W, H, F = 32, 32, 9
GUIDED = Guidance(cfg_scale=3.0, stg_scale=1.0, stg_blocks=(1,))


@pytest.fixture(scope="module")
def prompts(tiny_components) -> tuple[PromptFeatures, PromptFeatures]:  # noqa: F811
    c = tiny_components
    prompt, negative = encode_captions(c.text_encoder, c.embeddings_processor,
                                       ["a red ball bounces", ""], 128)
    return prompt, negative


def image() -> np.ndarray:
    y, x = np.mgrid[0:48, 0:40]
    return np.stack([x * 6, y * 5, (x + y) * 3], axis=-1).astype(np.uint8)


def request(prompts, guidance: Guidance = GUIDED, seed: int = 7, **extra) -> Request:
    return Request(prompt=prompts[0], negative=prompts[1], width=W, height=H, frames=F,
                   steps=2, seed=seed, guidance=guidance, **extra)


def mode_extra(mode: str, components) -> dict:
    if mode == "image_to_video":
        return {"image_latent": encode_image(components.video_encoder, image(), W, H)}
    if mode == "video_to_video":
        frames = np.repeat(image()[None, :32, :32], F, axis=0)
        return {"reference": encode_video(components.video_encoder, frames)}
    return {}


def streams(path: Path) -> tuple[int, int, int]:
    with av.open(str(path)) as c:
        n_video, n_audio = len(c.streams.video), len(c.streams.audio)
        frames = sum(1 for _ in c.decode(video=0))
    return n_video, n_audio, frames


@pytest.mark.parametrize("mode", ["text_to_video", "image_to_video", "video_to_video"])
def test_each_mode_writes_identical_mp4s(mode: str, tiny_components, prompts,  # noqa: F811
                                         tmp_path: Path) -> None:
    req = request(prompts, **mode_extra(mode, tiny_components))
    generate(tiny_components, req, tmp_path / "a.mp4")
    generate(tiny_components, req, tmp_path / "b.mp4")
    assert streams(tmp_path / "a.mp4") == (1, 1, F)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


def test_guidance_and_seed_change_the_result(tiny_components, prompts) -> None:  # noqa: F811
    c = tiny_components

    def latents(guidance: Guidance, seed: int = 7) -> torch.Tensor:
        g = sample_latents(c.transformer, c.embeddings_processor, request(prompts, guidance, seed))
        return torch.cat([g.video.flatten(), g.audio.flatten()])

    plain = latents(Guidance())
    cfg = latents(Guidance(cfg_scale=3.0))
    stg = latents(Guidance(stg_scale=1.0, stg_blocks=(1,)))
    assert not torch.equal(plain, cfg) and not torch.equal(plain, stg)
    assert not torch.equal(cfg, stg)
    assert torch.equal(plain, latents(Guidance()))
    assert not torch.equal(plain, latents(Guidance(), seed=8))


def test_conditioning_stays_clean(tiny_components, prompts) -> None:  # noqa: F811
    c = tiny_components
    extra = mode_extra("image_to_video", c)
    g = sample_latents(c.transformer, c.embeddings_processor, request(prompts, **extra))
    assert torch.equal(g.video[:, :1], extra["image_latent"])
    assert tuple(g.video.shape) == (128, 2, 1, 1)
    ref = mode_extra("video_to_video", c)
    g = sample_latents(c.transformer, c.embeddings_processor, request(prompts, **ref))
    assert tuple(g.video.shape) == (128, 2, 1, 1)


def test_no_audio_and_bad_inputs(tiny_components, prompts, tmp_path: Path) -> None:  # noqa: F811
    c = tiny_components
    req = request(prompts, Guidance(), with_audio=False)
    generate(c, req, tmp_path / "v.mp4")
    assert streams(tmp_path / "v.mp4") == (1, 0, F)
    with pytest.raises(ValueError, match="out of range"):
        sample_latents(c.transformer, c.embeddings_processor,
                       request(prompts, Guidance(stg_scale=1.0, stg_blocks=(5,))))
    with pytest.raises(ValueError, match="negative"):
        Request(prompt=prompts[0], width=W, height=H, frames=F, guidance=Guidance(cfg_scale=2.0))
    with pytest.raises(ValueError, match="8k"):
        Request(prompt=prompts[0], width=W, height=H, frames=10)
    with pytest.raises(ValueError, match="reference latent"):
        request(prompts, reference=torch.zeros(128, 2, 2, 2))


def test_sigmas_shift_with_token_count() -> None:
    small, large = sigmas_for(8, (1, 128, 2, 1, 1)), sigmas_for(8, (1, 128, 16, 16, 24))
    assert small[0] == large[0] == 1.0 and small[-1] == large[-1] == 0.0
    assert len(small) == 9 and bool((large[1:-2] > small[1:-2]).all())
