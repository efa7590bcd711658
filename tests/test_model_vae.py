"""Video and audio latents: the LTX-2 shape formulas, validation and decode shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ltx_core.model.video_vae import SpatialTilingConfig, TilingConfig

from aiprod_recipes.model import vae
from tests.model_fixtures import tiny_model_components


def _frames(frames: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (frames, height, width, 3), generator=generator, dtype=torch.uint8)


@pytest.mark.parametrize(("width", "height", "frames"), [(64, 64, 9), (96, 64, 17), (32, 32, 1)])
def test_video_latent_shape_and_decode(width, height, frames):
    tiny_components = tiny_model_components()
    latent = vae.encode_video(tiny_components.video_encoder, _frames(frames, height, width))
    expected = (128, 1 + (frames - 1) // 8, height // 32, width // 32)
    assert tuple(latent.shape) == expected == vae.video_latent_shape(frames, height, width)
    assert latent.dtype == torch.float32 and torch.isfinite(latent).all()
    decoded = vae.decode_video(tiny_components.video_decoder, latent)
    assert tuple(decoded.shape) == (frames, height, width, 3)
    assert decoded.dtype == torch.uint8


def test_video_encode_accepts_numpy_and_is_deterministic():
    tiny_components = tiny_model_components()
    frames = _frames(9, 32, 64)
    first = vae.encode_video(tiny_components.video_encoder, frames)
    second = vae.encode_video(tiny_components.video_encoder, frames.numpy())
    assert torch.equal(first, second)


def test_tiled_video_encode_keeps_shape():
    tiny_components = tiny_model_components()
    spatial = SpatialTilingConfig(tile_size_in_pixels=96, tile_overlap_in_pixels=64)
    latent = vae.encode_video(
        tiny_components.video_encoder,
        _frames(9, 64, 160),
        tiling=TilingConfig(spatial_config=spatial),
    )
    assert tuple(latent.shape) == (128, 2, 2, 5)
    assert torch.isfinite(latent).all()


@pytest.mark.parametrize(
    ("frames", "height", "width"), [(8, 32, 32), (9, 48, 32), (9, 32, 40), (0, 32, 32)]
)
def test_video_rejects_sizes_ltx2_cannot_encode(frames, height, width):
    tiny_components = tiny_model_components()
    with pytest.raises(ValueError):
        vae.encode_video(
            tiny_components.video_encoder,
            torch.zeros((frames, height, width, 3), dtype=torch.uint8),
        )


def test_video_rejects_float_frames():
    tiny_components = tiny_model_components()
    with pytest.raises(ValueError, match="uint8"):
        vae.encode_video(tiny_components.video_encoder, np.zeros((9, 32, 32, 3), dtype=np.float32))


@pytest.mark.parametrize(("duration_s", "channels"), [(0.4, 1), (1.0, 2)])
def test_audio_latent_shape(duration_s, channels):
    tiny_components = tiny_model_components()
    frames = vae.audio_latent_frames(duration_s)
    assert frames == round(25 * duration_s)
    generator = torch.Generator().manual_seed(1)
    waveform = torch.randn((channels, int(16_000 * duration_s)), generator=generator) * 0.1
    latent = vae.encode_audio(tiny_components.audio_encoder, waveform, frames)
    assert tuple(latent.shape) == (8, frames, 16)
    assert torch.isfinite(latent).all()


def test_audio_is_padded_or_trimmed_to_the_video():
    tiny_components = tiny_model_components()
    short = torch.zeros((1, 1000))
    long = torch.zeros((1, 64_000))
    for waveform in (short, long):
        latent = vae.encode_audio(tiny_components.audio_encoder, waveform, 10)
        assert tuple(latent.shape) == (8, 10, 16)


def test_audio_resamples_other_rates():
    tiny_components = tiny_model_components()
    waveform = torch.zeros((2, 4_800))
    latent = vae.encode_audio(tiny_components.audio_encoder, waveform, 5, sample_rate=24_000)
    assert tuple(latent.shape) == (8, 5, 16)


def test_audio_decode_shape():
    tiny_components = tiny_model_components()
    latent = vae.encode_audio(tiny_components.audio_encoder, torch.zeros((1, 3_200)), 5)
    waveform, rate = vae.decode_audio(
        tiny_components.audio_decoder, tiny_components.vocoder, latent
    )
    assert rate == 24_000
    assert waveform.shape[0] == 2 and waveform.dtype == torch.float32
    mel_frames = 5 * 4 - 3
    assert waveform.shape[1] == mel_frames * 240


def test_audio_rejects_many_channels():
    tiny_components = tiny_model_components()
    with pytest.raises(ValueError, match="waveform"):
        vae.encode_audio(tiny_components.audio_encoder, torch.zeros((6, 1600)), 2)
