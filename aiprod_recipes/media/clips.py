"""Scene clips held in memory (the ingest stage stores each as mp4 bytes in its shards)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from aiprod_recipes.media.audio import decode_audio
from aiprod_recipes.media.video import decode_frames


def decode_clip(data: bytes, fps: float, audio_rate: int | None,
                duration_s: float | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Frames [N, H, W, 3] and stereo audio [2, T] (or None) of an mp4 held in memory."""
    with tempfile.NamedTemporaryFile(suffix=".mp4") as f:
        f.write(data)
        f.flush()
        frames = decode_frames(Path(f.name), fps, 0.0, duration_s)
        audio = None
        if audio_rate is not None:
            audio = decode_audio(Path(f.name), audio_rate, 2, 0.0, duration_s)
    return frames, audio
