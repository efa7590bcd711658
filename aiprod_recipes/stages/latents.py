"""latents: scene clips -> video latents (bucketed, cropped) and audio latents, in shards.

Each clip takes one bucket (nearest aspect ratio, then most frames, then largest area). Audio
covers exactly the bucket's duration so both modalities line up. Clips are streamed one at a
time, so memory does not grow with the number of clips; only changed clips are encoded.
The model code is imported when a clip needs encoding, and only the VAEs' (never Gemma's).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from aiprod_recipes.media.buckets import Bucket, choose_bucket, fit_frames
from aiprod_recipes.model.runtime import load_model, model_fingerprint
from aiprod_recipes.names import CLIP_TENSOR, INGEST, MODEL_AUDIO_RATE
from aiprod_recipes.spec import Spec
from aiprod_recipes.specio import section_values
from aiprod_recipes.stages.context import Report, StagePaths
from aiprod_recipes.store.shards import ShardReader, item_key


def latents_params(spec: Spec) -> dict[str, Any]:
    """The sections a clip's latents are made with (resolved once per run, not per clip)."""
    return section_values(spec, ("video", "audio"))


def latents_key(params: dict[str, Any], row: dict[str, Any], model_fp: str) -> str:
    """What a clip's latents are made from: its content, the video and audio sections
    (``latents_params``), the model. It seeds the random crop, which the reference stage
    must reproduce exactly, so it leaves the code out (see ``stored_key``)."""
    return item_key(stage="latents", item=row["item"], content=row["content_hash"],
                    params=params, model=model_fp)


def stored_key(crop_key: str, code_digest: str) -> str:
    """The key a clip's latents are stored under: ``latents_key`` and the stage's code."""
    return item_key(stage="latents", made_from=crop_key, code=code_digest)


def tiling_of(spec: Spec) -> Any:
    """ltx-core's tiled encoder (a ``TilingConfig``) for ``video.tiled_encode``: bounded
    memory on large frames; None for whole-frame encoding."""
    from ltx_core.model.video_vae import TilingConfig

    return TilingConfig.default() if spec.video.tiled_encode else None


def buckets_of(spec: Spec) -> list[Bucket]:
    return [Bucket(b.width, b.height, b.frames) for b in spec.video.buckets]


def crop_rng(spec: Spec, key: str) -> np.random.Generator | None:
    """Random crops are seeded by the spec's seed and the item, so reruns give the same crop."""
    if spec.video.crop == "center":
        return None
    return np.random.default_rng([spec.video.seed, int(key[:8], 16)])


def clip_pixels(spec: Spec, row: dict[str, Any], data: bytes, key: str,
                with_audio: bool) -> tuple[Bucket, np.ndarray, np.ndarray | None] | None:
    """The clip fitted to its bucket (and its audio), or None when it fits no bucket."""
    bucket = choose_bucket(buckets_of(spec), row["width"], row["height"], row["frames"])
    if bucket is None:
        return None
    from aiprod_recipes.media.clips import decode_clip

    duration = bucket.frames / row["fps"]
    rate = MODEL_AUDIO_RATE if with_audio else None
    frames, audio = decode_clip(data, row["fps"], rate, duration)
    if len(frames) < bucket.frames:
        return None
    return bucket, fit_frames(frames, bucket, crop_rng(spec, key)), audio


def _video_latent(spec: Spec, components: Any, frames: np.ndarray) -> Any:
    from aiprod_recipes.model.vae import encode_video

    return encode_video(components.video_encoder, frames, tiling_of(spec))


def _audio_latent(spec: Spec, components: Any, audio: np.ndarray | None,
                  duration_s: float) -> Any:
    from aiprod_recipes.model.vae import audio_latent_frames, encode_audio

    if audio is None:
        if spec.audio.on_missing == "skip":
            return None
        audio = np.zeros((2, round(duration_s * MODEL_AUDIO_RATE)), np.float32)
    return encode_audio(components.audio_encoder, audio, audio_latent_frames(duration_s),
                        MODEL_AUDIO_RATE)


def run(spec: Spec, paths: StagePaths) -> Report:
    clips = ShardReader(paths.upstream(INGEST))
    model_fp = model_fingerprint(paths.model)
    params = latents_params(spec)
    crop_keys = {r["item"]: latents_key(params, r, model_fp) for r in clips.rows}
    keyed = sorted((stored_key(k, paths.code_digest), item) for item, k in crop_keys.items())
    want = {"video_encoder"} | ({"audio_encoder"} if spec.audio.enabled else set())
    components: Any = None
    skipped: list[str] = []
    with paths.shard_writer() as writer:
        for key, item in writer.to_compute(keyed, "latents"):
            row = clips.by_item[item]
            fitted = clip_pixels(spec, row, clips.item_bytes(item, CLIP_TENSOR),
                                 crop_keys[item], spec.audio.enabled)
            if fitted is None:
                skipped.append(f"{item} (shorter than every bucket)")
                continue
            bucket, frames, audio = fitted
            components = components or load_model(spec.model, paths.model, want)
            tensors = {"video": _video_latent(spec, components, frames).bfloat16()}
            if spec.audio.enabled:
                latent = _audio_latent(spec, components, audio, bucket.frames / row["fps"])
                if latent is None:
                    skipped.append(f"{item} (no audio; audio.on_missing = \"skip\")")
                    continue
                tensors["audio"] = latent.bfloat16()
            writer.add(key, item, tensors, {"bucket": bucket.name, "fps": row["fps"],
                                            "has_audio": audio is not None})
    if skipped:
        print(f"latents: skipped {len(skipped)} clip(s): {', '.join(skipped[:5])}",
              file=sys.stderr)
    return {"clips": len(keyed), "encoded": writer.computed, "reused": writer.reused,
            "skipped": len(keyed) - writer.computed - writer.reused}
