"""Captions -> stored Gemma features -> the transformer's text context.

LTX-2's text path is Gemma-3 (all hidden states) -> feature extractor (normalise and project
the stacked layers: ``text_embedding_projection``) -> per-modality 1-D transformer
connectors -> the diffusion transformer's cross-attention. The embed stage stores the
output of the feature extractor, the last point that does not depend on anything a LoRA
may train, and the point Lightricks' trainer caches too. Training then runs the stored
features through the connectors (``features_to_context``).

Token counts: captions are left-padded (ltx-core's tokenizer setting) to ``max_tokens``,
which must be a multiple of 128 because the connectors replace padding with 128 learnable
registers tiled along the sequence. Longer captions are truncated. The connectors' register
substitution indexes with a batch-1 mask, so features go through them one prompt at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from ltx_core.text_encoders.gemma import (
    EmbeddingsProcessor,
    GemmaTextEncoder,
    convert_to_additive_mask,
)

TOKEN_MULTIPLE = 128
PADDING_SIDE = "left"


@dataclass(frozen=True)
class PromptFeatures:
    """One caption's stored text features.

    ``video`` [T, D] feeds the video connector. ``audio`` [T, D'] feeds the audio connector,
    or is None when the model uses the same features for both (the 19B V1 extractor), which
    halves what is stored. ``mask`` [T] is True on real tokens (left padding).
    """

    video: torch.Tensor
    audio: torch.Tensor | None
    mask: torch.Tensor


@dataclass(frozen=True)
class TextContext:
    """Batched connector outputs: what ``Modality.context`` / ``context_mask`` take."""

    video: torch.Tensor
    audio: torch.Tensor
    mask: torch.Tensor


def check_max_tokens(max_tokens: int) -> None:
    """The connectors need a positive multiple of 128 tokens."""
    if max_tokens < TOKEN_MULTIPLE or max_tokens % TOKEN_MULTIPLE:
        raise ValueError(
            f"max_tokens must be a positive multiple of {TOKEN_MULTIPLE}, got {max_tokens}"
        )


def token_count(text_encoder: GemmaTextEncoder, caption: str, max_tokens: int) -> int:
    """Real tokens a caption keeps: <bos> plus its pieces, truncated to ``max_tokens``."""
    ids = text_encoder.tokenizer.tokenizer(caption.strip(), truncation=False).input_ids
    return min(len(ids), max_tokens)


@torch.inference_mode()
def encode_captions(
    text_encoder: GemmaTextEncoder,
    embeddings_processor: EmbeddingsProcessor,
    captions: Sequence[str],
    max_tokens: int,
) -> list[PromptFeatures]:
    """Gemma hidden states -> feature extractor, per caption, padded to ``max_tokens``.

    Returned tensors are on the CPU in the models' dtype.
    """
    check_max_tokens(max_tokens)
    extractor = embeddings_processor.feature_extractor
    if extractor is None:
        raise ValueError("the embeddings processor has no feature extractor")
    tokenizer = text_encoder.tokenizer
    saved = tokenizer.max_length
    tokenizer.max_length = max_tokens
    try:
        return [_encode_one(text_encoder, extractor, caption) for caption in captions]
    finally:
        tokenizer.max_length = saved


def _encode_one(
    text_encoder: GemmaTextEncoder, extractor: torch.nn.Module, caption: str
) -> PromptFeatures:
    hidden_states, mask = text_encoder.encode(caption, padding_side=PADDING_SIDE)
    video, audio = extractor(hidden_states, mask, PADDING_SIDE)
    shared = audio is None or audio is video
    return PromptFeatures(
        video=video[0].cpu(),
        audio=None if shared else audio[0].cpu(),
        mask=mask[0].bool().cpu(),
    )


def _run_connectors(
    embeddings_processor: EmbeddingsProcessor,
    video: torch.Tensor,
    audio: torch.Tensor,
    mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    additive = convert_to_additive_mask(mask.unsqueeze(0), video.dtype)
    video_ctx, audio_ctx, binary = embeddings_processor.create_embeddings(
        video.unsqueeze(0), audio.unsqueeze(0), additive
    )
    if audio_ctx is None:
        raise ValueError("the embeddings processor has no audio connector")
    return video_ctx[0], audio_ctx[0], binary[0]


def features_to_context(
    embeddings_processor: EmbeddingsProcessor,
    features: Sequence[PromptFeatures],
    device: torch.device | str,
    dtype: torch.dtype,
) -> TextContext:
    """Stored features -> connectors -> batched context for the transformer.

    Gradients flow (no inference mode) in case the connectors are trained; wrap the call in
    ``torch.no_grad()`` otherwise. ``video`` [B, T, caption_channels] and ``audio`` go to
    ``Modality.context`` of each modality (the transformer applies its caption projection);
    ``mask`` [B, T] (int64, 1 = attend) to ``Modality.context_mask``.
    """
    if not features:
        raise ValueError("no features")
    outputs = []
    for item in features:
        video = item.video.to(device=device, dtype=dtype)
        audio = video if item.audio is None else item.audio.to(device=device, dtype=dtype)
        outputs.append(_run_connectors(embeddings_processor, video, audio, item.mask.to(device)))
    video_ctx, audio_ctx, mask = (torch.stack(parts) for parts in zip(*outputs, strict=True))
    return TextContext(video=video_ctx, audio=audio_ctx, mask=mask)
