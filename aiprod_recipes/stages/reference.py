"""reference: Canny-edge reference videos encoded to latents, for IC-LoRA (video-to-video).

The reference of a clip is made from exactly the frames its target latent was made from
(same bucket, same crop), downscaled by ``reference.downscale``. When the recipe does not use
references the stage writes an empty manifest and finishes at once: the media and model
code (and torch) are imported only when references are on.
"""

from __future__ import annotations

from typing import Any

from aiprod_recipes.model.runtime import load_model, model_fingerprint
from aiprod_recipes.names import CLIP_TENSOR, INGEST
from aiprod_recipes.spec import Spec
from aiprod_recipes.specio import section_values
from aiprod_recipes.stages.context import Report, StagePaths
from aiprod_recipes.store.shards import ShardReader, item_key


def run(spec: Spec, paths: StagePaths) -> Report:
    writer = paths.shard_writer()
    if not spec.reference.enabled:
        writer.close()
        return {"enabled": False, "clips": 0}
    from aiprod_recipes.media.canny import canny_video
    from aiprod_recipes.model.vae import encode_video
    from aiprod_recipes.stages.latents import (
        clip_pixels,
        latents_key,
        latents_params,
        tiling_of,
    )

    clips = ShardReader(paths.upstream(INGEST))
    params = section_values(spec, ("reference", "video"))
    model_fp = model_fingerprint(paths.model)
    crop_params = latents_params(spec)
    keyed = sorted((item_key(stage="reference", item=r["item"], content=r["content_hash"],
                             params=params, model=model_fp, code=paths.code_digest), r["item"])
                   for r in clips.rows)
    components: Any = None
    with writer:
        for key, item in writer.to_compute(keyed, "reference"):
            row = clips.by_item[item]
            fitted = clip_pixels(spec, row, clips.item_bytes(item, CLIP_TENSOR),
                                 latents_key(crop_params, row, model_fp), with_audio=False)
            if fitted is None:
                continue
            bucket, frames, _ = fitted
            components = components or load_model(spec.model, paths.model, {"video_encoder"})
            latent = encode_video(components.video_encoder, canny_video(frames, spec.reference),
                                  tiling_of(spec))
            writer.add(key, item, {"video": latent.bfloat16()}, {"bucket": bucket.name})
    return {"enabled": True, "clips": len(keyed), "encoded": writer.computed,
            "reused": writer.reused}
