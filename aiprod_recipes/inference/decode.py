"""``aiprod-recipes decode``: turn stored latents back into an mp4 with video and sound.

It shows what the trainer will see (bucket, crop, VAE quality) without leaving the project.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aiprod_recipes.media.encode import encode_mp4
from aiprod_recipes.model.runtime import load_model, model_paths
from aiprod_recipes.model.vae import decode_audio, decode_video
from aiprod_recipes.names import MODEL_AUDIO_RATE, stage_dir
from aiprod_recipes.spec import Spec
from aiprod_recipes.store.shards import ShardReader


class DecodeError(LookupError):
    """The clip is not in the latents output."""


def decode_item(spec: Spec, item: str, out: Path, stage: str = "latents") -> Path:
    """Decode one clip's latents (``stage`` = latents or reference) to ``out``."""
    reader = ShardReader(stage_dir(stage))
    if item not in reader.by_item:
        known = ", ".join(sorted(reader.by_item)[:5]) or "(none: run the stage first)"
        raise DecodeError(f"no clip {item!r} in {stage_dir(stage)}; clips: {known}")
    row = reader.by_item[item]
    tensors = reader.item_tensors(item)
    want = {"video_decoder"} | ({"audio_decoder", "vocoder"} if "audio" in tensors else set())
    components = load_model(spec.model, model_paths(spec), want)
    frames = decode_video(components.video_decoder, tensors["video"].float()).numpy()
    audio, rate = None, MODEL_AUDIO_RATE
    if "audio" in tensors:
        waveform, rate = decode_audio(components.audio_decoder, components.vocoder,
                                      tensors["audio"].float())
        audio = np.ascontiguousarray(waveform.numpy())
    out.parent.mkdir(parents=True, exist_ok=True)
    encode_mp4(out, list(frames), float(row.get("fps", spec.ingest.fps)), audio, rate)
    return out
