"""The tiny transformer runs a joint video + audio forward/backward with per-token timesteps."""

from __future__ import annotations

import torch
from ltx_core.components.patchifiers import AudioPatchifier, VideoLatentPatchifier, get_pixel_coords
from ltx_core.guidance.perturbations import BatchedPerturbationConfig
from ltx_core.model.transformer.modality import Modality
from ltx_core.types import VIDEO_SCALE_FACTORS, AudioLatentShape, VideoLatentShape

from aiprod_recipes.model import text
from aiprod_recipes.model.loader import load_components
from tests.model_fixtures import tiny_model_components, tiny_model_paths


def test_av_forward_and_backward():
    tiny_model = tiny_model_paths()
    tiny_components = tiny_model_components()
    features = text.encode_captions(
        tiny_components.text_encoder, tiny_components.embeddings_processor, ["a fox", "a city"], 128
    )
    context = text.features_to_context(
        tiny_components.embeddings_processor, features, "cpu", torch.float32
    )
    transformer = load_components(
        tiny_model.checkpoint, None, {"transformer"}, "cpu", torch.float32
    ).transformer
    batch, fps = 2, 25.0
    video_shape = VideoLatentShape(batch, 128, 2, 2, 3)
    audio_shape = AudioLatentShape(batch, 8, 13, 16)
    video_patchifier, audio_patchifier = (
        VideoLatentPatchifier(patch_size=1),
        AudioPatchifier(patch_size=1),
    )
    video = video_patchifier.patchify(torch.randn(video_shape.to_torch_shape()))
    audio = audio_patchifier.patchify(torch.randn(audio_shape.to_torch_shape()))
    video_positions = get_pixel_coords(
        video_patchifier.get_patch_grid_bounds(video_shape), VIDEO_SCALE_FACTORS, causal_fix=True
    ).float()
    video_positions[:, 0] /= fps
    sigma = torch.tensor([0.3, 0.9])
    video_t = sigma[:, None].repeat(1, video.shape[1])
    video_t[:, :6] = 0.0
    audio_t = sigma[:, None].repeat(1, audio.shape[1])
    video_in = Modality(
        video, sigma, video_t, video_positions, context.video, context_mask=context.mask
    )
    audio_in = Modality(
        audio,
        sigma,
        audio_t,
        audio_patchifier.get_patch_grid_bounds(audio_shape),
        context.audio,
        context_mask=context.mask,
    )
    transformer.train()
    video_out, audio_out = transformer(video_in, audio_in, BatchedPerturbationConfig.empty(batch))
    assert video_out.shape == video.shape == (batch, 12, 128)
    assert audio_out.shape == audio.shape == (batch, 13, 128)
    (video_out.square().mean() + audio_out.square().mean()).backward()
    grads = [p.grad for p in transformer.parameters()]
    assert sum(g is not None and bool(g.abs().sum() > 0) for g in grads) > len(grads) // 2
