"""embed: captions -> Gemma text features (the LTX-2 text path before the connectors).

Features are stored per clip in shards, keyed by the caption text, the text_encoder section
and the model fingerprint; only new or changed captions load Gemma at all (or import it:
ltx-core's Gemma code pulls in transformers).
"""

from __future__ import annotations

from typing import Any

from aiprod_recipes.model.errors import ModelSettingError
from aiprod_recipes.model.runtime import load_model, load_options, model_fingerprint
from aiprod_recipes.names import CAPTION
from aiprod_recipes.spec import Spec
from aiprod_recipes.specio import section_values
from aiprod_recipes.stages.caption import read_captions
from aiprod_recipes.stages.context import Report, StageFailed, StagePaths
from aiprod_recipes.store.shards import item_key


def run(spec: Spec, paths: StagePaths) -> Report:
    captions = read_captions(paths.upstream(CAPTION))
    params = section_values(spec, ("text_encoder",))
    model_fp = model_fingerprint(paths.model)
    keyed = sorted((item_key(stage="embed", item=item, caption=text, params=params,
                             model=model_fp, code=paths.code_digest), item)
                   for item, text in captions.items())
    components: Any = None
    with paths.shard_writer() as writer:
        for key, item in writer.to_compute(keyed, "embed"):
            components = components or _load(spec, paths)
            features = _features(spec, components, captions[item])
            tensors = {"video": features.video, "mask": features.mask}
            if features.audio is not None:
                tensors["audio"] = features.audio
            writer.add(key, item, tensors, {"tokens": int(features.mask.sum())})
    return {"captions": len(keyed), "encoded": writer.computed, "reused": writer.reused}


def _load(spec: Spec, paths: StagePaths) -> Any:
    """Gemma and its feature extractor (in 8 bit when ``text_encoder.load_in_8bit``)."""
    try:
        return load_model(spec.model, paths.model, {"text_encoder", "embeddings_processor"},
                          load_options(spec))
    except ModelSettingError as e:
        raise StageFailed(f"embed: {e}") from e


def _features(spec: Spec, components: Any, caption: str) -> Any:
    """One caption's stored Gemma features (``model.text.TextFeatures``)."""
    from aiprod_recipes.model.text import encode_captions

    (features,) = encode_captions(components.text_encoder, components.embeddings_processor,
                                  [caption], spec.text_encoder.max_tokens)
    return features
