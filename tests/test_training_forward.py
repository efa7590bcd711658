"""Transformer inputs: ltx-core's patchifying and positions; predictions per token."""

from __future__ import annotations

import torch
from ltx_core.components.patchifiers import AudioPatchifier, VideoLatentPatchifier
from ltx_core.tools import AudioLatentTools, VideoLatentTools
from ltx_core.types import AudioLatentShape, VideoLatentShape

from aiprod_recipes.training.flow import noise_tokens
from aiprod_recipes.training.forward import predict, text_context, tokenize
from tests.test_training_fixtures import fresh_model, make_batch, one_thread  # noqa: F401


def test_video_tokens_match_ltx_core_latent_tools() -> None:
    batch = make_batch(0, batch_size=2)
    tokens = tokenize(batch, with_audio=True)
    tools = VideoLatentTools(VideoLatentPatchifier(1),
                             VideoLatentShape.from_torch_shape(batch.video.shape), fps=24.0)
    state = tools.create_initial_state("cpu", torch.float32, batch.video)
    torch.testing.assert_close(tokens.video, state.latent)
    torch.testing.assert_close(tokens.video_positions, state.positions)
    assert tokens.tokens_per_frame == 4 and tokens.target_count == 12


def test_audio_tokens_match_ltx_core_latent_tools() -> None:
    batch = make_batch(0)
    tokens = tokenize(batch, with_audio=True)
    shape = AudioLatentShape(batch=1, channels=8, frames=8, mel_bins=16)
    state = AudioLatentTools(AudioPatchifier(1), shape).create_initial_state(
        "cpu", torch.float32, batch.audio)
    torch.testing.assert_close(tokens.audio, state.latent)
    torch.testing.assert_close(tokens.audio_positions, state.positions)


def test_reference_tokens_appended_with_scaled_positions() -> None:
    batch = make_batch(0, audio=False, reference=True)
    tokens = tokenize(batch, with_audio=False)
    assert tokens.target_count == 12 and tokens.reference_count == 3
    assert tokens.video.shape[1] == 15
    assert tokens.reference_mask()[0].tolist() == [False] * 12 + [True] * 3
    ref_pos = tokens.video_positions[:, :, 12:]
    assert ref_pos[0, 1, 0].tolist() == [0.0, 64.0]


def test_predict_shapes_with_and_without_audio() -> None:
    model, processor = fresh_model()
    batch = make_batch(1)
    tokens = tokenize(batch, with_audio=True)
    context = text_context(processor, batch)
    g = torch.Generator().manual_seed(0)
    video = noise_tokens(tokens.video, torch.tensor([0.5]),
                         torch.zeros(1, 12, dtype=torch.bool), g)
    audio = noise_tokens(tokens.audio, torch.tensor([0.5]),
                         torch.zeros(1, 8, dtype=torch.bool), g)
    with torch.no_grad():
        v, a = predict(model, tokens, context, video, audio)
        v_only, a_none = predict(model, tokens, context, video, None)
    assert v.shape == (1, 12, 128) and a.shape == (1, 8, 128)
    assert v_only.shape == (1, 12, 128) and a_none is None
    assert torch.isfinite(v).all() and torch.isfinite(a).all()
