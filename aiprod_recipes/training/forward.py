"""From stored latents and text features to ltx-core transformer inputs and velocity outputs.

Shared by training and the held-out loss: both patchify the same way, place the same
positions and call the model through ``predict``. Patchifying, positions and the text
connectors are ltx-core's own (``VideoLatentPatchifier``, ``AudioPatchifier``,
``get_pixel_coords``, ``EmbeddingsProcessor.create_embeddings``), applied exactly as its
``VideoLatentTools`` / ``AudioLatentTools`` / ``VideoConditionByReferenceLatent`` do at
inference, so an adapter is trained on the inputs it will be sampled with.

Layout of a token sequence: video target tokens first, then (IC-LoRA) reference tokens
appended at the end, as ltx-core's reference conditioning appends them.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from ltx_core.components.patchifiers import (
    AudioPatchifier,
    VideoLatentPatchifier,
    get_pixel_coords,
)
from ltx_core.guidance.perturbations import BatchedPerturbationConfig
from ltx_core.model.transformer.modality import Modality
from ltx_core.text_encoders.gemma.embeddings_processor import EmbeddingsProcessor
from ltx_core.types import AudioLatentShape, SpatioTemporalScaleFactors, VideoLatentShape

from aiprod_recipes.model.text import PromptFeatures, TextContext, features_to_context
from aiprod_recipes.training.flow import Noised

__all__ = [
    "Batch",
    "Tokens",
    "audio_tokens",
    "predict",
    "text_context",
    "tokenize",
    "video_tokens",
]

VIDEO_SCALE = SpatioTemporalScaleFactors.default()
_VIDEO_PATCHIFIER = VideoLatentPatchifier(patch_size=1)
_AUDIO_PATCHIFIER = AudioPatchifier(patch_size=1)


@dataclass(frozen=True)
class Batch:
    """What the train stage reads from the shards, batched.

    video: clean video latents [B, 128, F', H', W'].
    text: one stored ``PromptFeatures`` per sample (Gemma features before the connectors).
    audio: clean audio latents [B, 8, T, 16], or None (no audio branch).
    reference: IC-LoRA reference latents [B, 128, F', H'/d, W'/d], or None.
    fps: frame rate of the clips (the time axis of the video positions is in seconds).
    reference_downscale: target / reference resolution ratio d.
    """

    video: torch.Tensor
    text: Sequence[PromptFeatures]
    audio: torch.Tensor | None = None
    reference: torch.Tensor | None = None
    fps: float = 24.0
    reference_downscale: int = 1

    def to(self, device: torch.device) -> Batch:
        """The same batch with its tensors on ``device`` (text features move when used)."""
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)
        return Batch(video=self.video.to(device), text=self.text, audio=move(self.audio),
                     reference=move(self.reference), fps=self.fps,
                     reference_downscale=self.reference_downscale)


@dataclass(frozen=True)
class Tokens:
    """Patchified clean tokens and positions of one batch.

    ``video`` [B, Tv, 128] holds the target tokens followed by ``reference_count``
    reference tokens; ``video_positions`` [B, 3, Tv, 2]. ``tokens_per_frame`` is the
    number of tokens in one latent frame of the target.
    """

    video: torch.Tensor
    video_positions: torch.Tensor
    target_count: int
    reference_count: int
    tokens_per_frame: int
    audio: torch.Tensor | None
    audio_positions: torch.Tensor | None

    def reference_mask(self) -> torch.Tensor:
        """[B, Tv] True on reference tokens (clean, no loss)."""
        mask = torch.zeros(self.video.shape[:2], dtype=torch.bool)
        mask[:, self.target_count :] = True
        return mask


def video_tokens(latents: torch.Tensor, fps: float, downscale: int = 1
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens [B, F'H'W', C] and pixel-space positions [B, 3, T, 2] (time in seconds).

    ``downscale`` scales the spatial positions of a reduced-resolution IC-LoRA reference
    into the target's coordinates, as ltx-core's VideoConditionByReferenceLatent does.
    """
    shape = VideoLatentShape.from_torch_shape(latents.shape)
    bounds = _VIDEO_PATCHIFIER.get_patch_grid_bounds(shape, device=latents.device)
    positions = get_pixel_coords(bounds, VIDEO_SCALE, causal_fix=True).float()
    positions[:, 0, ...] = positions[:, 0, ...] / fps
    if downscale != 1:
        positions[:, 1:, ...] = positions[:, 1:, ...] * downscale
    return _VIDEO_PATCHIFIER.patchify(latents), positions


def audio_tokens(latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens [B, T, 8 x 16] and time positions in seconds [B, 1, T, 2]."""
    b, c, t, f = latents.shape
    shape = AudioLatentShape(batch=b, channels=c, frames=t, mel_bins=f)
    positions = _AUDIO_PATCHIFIER.get_patch_grid_bounds(shape, device=latents.device)
    return _AUDIO_PATCHIFIER.patchify(latents), positions


def tokenize(batch: Batch, with_audio: bool) -> Tokens:
    """Patchify a batch: target video (+ reference appended) and, if asked, audio."""
    video, positions = video_tokens(batch.video, batch.fps)
    target_count = video.shape[1]
    tokens_per_frame = batch.video.shape[3] * batch.video.shape[4]
    reference_count = 0
    if batch.reference is not None:
        ref, ref_pos = video_tokens(batch.reference, batch.fps, batch.reference_downscale)
        reference_count = ref.shape[1]
        video = torch.cat([video, ref], dim=1)
        positions = torch.cat([positions, ref_pos], dim=2)
    audio = audio_pos = None
    if with_audio:
        if batch.audio is None:
            raise ValueError("the strategy trains audio (with_audio = true) but the batch has none")
        audio, audio_pos = audio_tokens(batch.audio)
    return Tokens(video, positions, target_count, reference_count, tokens_per_frame,
                  audio, audio_pos)


def text_context(processor: EmbeddingsProcessor, batch: Batch) -> TextContext:
    """Run the frozen text connectors on the stored features (no gradients).

    The connectors replace padding with learnable registers, so the returned mask is what
    the transformer's cross-attention reads.
    """
    param = next(processor.parameters())
    with torch.no_grad():
        return features_to_context(processor, batch.text, param.device, param.dtype)


class ContextCache:
    """Connector outputs per stored caption, computed once instead of at every step.

    The connectors are frozen, so a caption's features always give the same context; the
    cache is keyed by the features' bytes and bounded (least recently used goes first).
    Each entry is computed alone, exactly as ``features_to_context`` does per prompt, so
    cached and uncached runs give identical numbers.
    """

    def __init__(self, processor: EmbeddingsProcessor, capacity: int = 64) -> None:
        self.processor = processor
        self.capacity = capacity
        self._entries: OrderedDict[bytes, TextContext] = OrderedDict()

    @staticmethod
    def key(features: PromptFeatures) -> bytes:
        h = hashlib.sha1()
        for t in (features.video, features.audio, features.mask):
            if t is not None:
                h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return h.digest()

    def __call__(self, texts: Sequence[PromptFeatures]) -> TextContext:
        parts = [self._one(f) for f in texts]
        return TextContext(video=torch.cat([p.video for p in parts]),
                           audio=torch.cat([p.audio for p in parts]),
                           mask=torch.cat([p.mask for p in parts]))

    def _one(self, features: PromptFeatures) -> TextContext:
        key = self.key(features)
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        param = next(self.processor.parameters())
        with torch.no_grad():
            context = features_to_context(self.processor, [features], param.device, param.dtype)
        self._entries[key] = context
        if len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        return context


def _modality(noised: Noised, positions: torch.Tensor, context: torch.Tensor,
              mask: torch.Tensor, dtype: torch.dtype) -> Modality:
    return Modality(
        latent=noised.latent.to(dtype),
        sigma=noised.sigma,
        timesteps=noised.timesteps,
        positions=positions.to(noised.latent.device),
        context=context,
        context_mask=mask,
    )


def predict(
    model: torch.nn.Module,
    tokens: Tokens,
    context: TextContext,
    video: Noised,
    audio: Noised | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Velocity predictions for every video token [B, Tv, 128] and audio token (or None).

    ``video`` / ``audio`` are the noised tokens from ``flow.noise_tokens`` for ``tokens``.
    The model runs in the dtype of its input projection; an autocast context around this
    call decides the matmul precision.
    """
    dtype = _input_dtype(model)
    # ltx-core's VideoLatentTools hands the model video positions in the latent dtype (audio
    # positions stay float32); rounding them the same way keeps training and sampling equal.
    video_positions = tokens.video_positions.to(dtype)
    v_mod = _modality(video, video_positions, context.video, context.mask, dtype)
    a_mod = None
    if audio is not None:
        if tokens.audio_positions is None or context.audio is None:
            raise ValueError("audio tokens need audio positions and an audio text context")
        a_mod = _modality(audio, tokens.audio_positions, context.audio, context.mask, dtype)
    perturbations = BatchedPerturbationConfig.empty(video.latent.shape[0])
    return model(video=v_mod, audio=a_mod, perturbations=perturbations)


def _input_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype activations enter the transformer in (the patchify projection's); a DDP or
    FSDP wrapper is looked through."""
    proj = getattr(model, "module", model).patchify_proj
    weight = getattr(proj, "base_layer", proj).weight
    return weight.dtype if weight.is_floating_point() else torch.bfloat16
