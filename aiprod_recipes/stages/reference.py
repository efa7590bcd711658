"""reference: Canny-edge reference videos encoded to latents, for IC-LoRA (video-to-video).

The reference of a clip is made from exactly the frames its target latent was made from
(same bucket, same crop), downscaled by ``reference.downscale``. When the recipe does not use
references the stage writes an empty manifest and finishes at once.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from aiprod_recipes.model.vae import encode_video
from aiprod_recipes.runtime import Report, StagePaths
from aiprod_recipes.spec import Reference, Spec
from aiprod_recipes.specio import section_values
from aiprod_recipes.stages.common import load_model, model_fingerprint
from aiprod_recipes.stages.latents import clip_pixels, latents_key, tiling_of
from aiprod_recipes.store.shards import ShardReader, ShardWriter, item_key, open_previous


def canny_video(frames: np.ndarray, cfg: Reference) -> np.ndarray:
    """White edges on black, three channels, at 1/downscale of the size."""
    h, w = frames.shape[1] // cfg.downscale, frames.shape[2] // cfg.downscale
    out = np.empty((len(frames), h, w, 3), np.uint8)
    for i, frame in enumerate(frames):
        small = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA) if cfg.downscale > 1 \
            else frame
        edges = cv2.Canny(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), cfg.canny_low, cfg.canny_high)
        out[i] = edges[..., None]
    return out


def run(spec: Spec, paths: StagePaths) -> Report:
    writer = ShardWriter(paths.out, open_previous(paths.previous))
    if not spec.reference.enabled:
        writer.close()
        return {"enabled": False, "clips": 0}
    clips = ShardReader(paths.upstream("ingest"))
    params = section_values(spec, ("reference", "video"))
    model_fp = model_fingerprint(paths.model)
    keyed = sorted((item_key(stage="reference", item=r["item"], content=r["content_hash"],
                             params=params, model=model_fp), r["item"]) for r in clips.rows)
    components: Any = None
    with writer:
        for key, item in writer.to_compute(keyed, "reference"):
            row = clips.by_item[item]
            fitted = clip_pixels(spec, row, clips.item_tensors(item)["mp4"].numpy().tobytes(),
                                 latents_key(spec, row, model_fp), with_audio=False)
            if fitted is None:
                continue
            bucket, frames, _ = fitted
            components = components or load_model(spec.model, paths.model, {"video_encoder"})
            latent = encode_video(components.video_encoder, canny_video(frames, spec.reference),
                                  tiling_of(spec))
            writer.add(key, item, {"video": latent.bfloat16()}, {"bucket": bucket.name})
    return {"enabled": True, "clips": len(keyed), "encoded": writer.computed,
            "reused": writer.reused}
