"""Prompt text -> stored-form Gemma features, loading the text encoder only for as long as
it is needed (it is larger than the transformer's working set on small GPUs)."""

from __future__ import annotations

from collections.abc import Sequence

from aiprod_recipes.inference.sampler import free
from aiprod_recipes.model.loader import LoadOptions
from aiprod_recipes.model.runtime import ModelPaths, load_model
from aiprod_recipes.model.text import PromptFeatures, encode_captions
from aiprod_recipes.spec import Model, TextEncoder

__all__ = ["encode_prompts"]


def encode_prompts(model: Model, paths: ModelPaths, text: TextEncoder,
                   prompts: Sequence[str]) -> list[PromptFeatures]:
    """Features of each prompt, in order; the text encoder is freed before returning.
    Gemma loads in 8 bit when ``text.load_in_8bit`` says so."""
    if not prompts:
        return []
    components = load_model(model, paths, {"text_encoder", "embeddings_processor"},
                            LoadOptions(text_in_8bit=text.load_in_8bit))
    try:
        return encode_captions(components.text_encoder, components.embeddings_processor,
                               list(prompts), text.max_tokens)
    finally:
        free(components.text_encoder, components.embeddings_processor)
