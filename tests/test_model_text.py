"""Captions -> Gemma features (padded, masked) -> connector context."""

from __future__ import annotations

import pytest
import torch

from aiprod_recipes.model import text
from tests.model_fixtures import tiny_model_components

CAPTIONS = ["a red fox runs across a snowy field", "the camera pans over a city street at night"]


def _encode(components, captions, max_tokens=128):
    return text.encode_captions(
        components.text_encoder, components.embeddings_processor, captions, max_tokens
    )


@pytest.mark.parametrize("max_tokens", [128, 256])
def test_features_are_padded_and_masked(max_tokens):
    tiny_components = tiny_model_components()
    features = _encode(tiny_components, CAPTIONS, max_tokens)
    width = tiny_components.embeddings_processor.feature_extractor.aggregate_embed.out_features
    for caption, item in zip(CAPTIONS, features, strict=True):
        count = text.token_count(tiny_components.text_encoder, caption, max_tokens)
        assert tuple(item.video.shape) == (max_tokens, width)
        assert item.audio is None
        assert item.mask.dtype == torch.bool and int(item.mask.sum()) == count
        assert not item.mask[: max_tokens - count].any()
        assert bool(item.mask[max_tokens - count :].all())
        assert not item.video[~item.mask].any()


def test_long_captions_are_truncated():
    tiny_components = tiny_model_components()
    caption = " ".join(["fox"] * 400)
    assert text.token_count(tiny_components.text_encoder, caption, 128) == 128
    (item,) = _encode(tiny_components, [caption])
    assert bool(item.mask.all())


def test_features_are_deterministic_and_restore_max_length():
    tiny_components = tiny_model_components()
    before = tiny_components.text_encoder.tokenizer.max_length
    first = _encode(tiny_components, CAPTIONS[:1])[0]
    second = _encode(tiny_components, CAPTIONS[:1])[0]
    assert torch.equal(first.video, second.video)
    assert tiny_components.text_encoder.tokenizer.max_length == before


@pytest.mark.parametrize("max_tokens", [0, 100, 130])
def test_token_count_must_be_a_multiple_of_128(max_tokens):
    tiny_components = tiny_model_components()
    with pytest.raises(ValueError, match="multiple of 128"):
        _encode(tiny_components, CAPTIONS[:1], max_tokens)


def test_features_to_context():
    tiny_components = tiny_model_components()
    features = _encode(tiny_components, CAPTIONS)
    context = text.features_to_context(
        tiny_components.embeddings_processor, features, "cpu", torch.float32
    )
    assert tuple(context.video.shape) == (2, 128, 64)
    assert tuple(context.audio.shape) == (2, 128, 64)
    assert tuple(context.mask.shape) == (2, 128)
    assert torch.isfinite(context.video).all() and torch.isfinite(context.audio).all()
    single = text.features_to_context(
        tiny_components.embeddings_processor, features[1:], "cpu", torch.float32
    )
    assert torch.allclose(single.video[0], context.video[1])
