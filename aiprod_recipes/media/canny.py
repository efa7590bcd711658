"""Canny-edge reference videos: the IC-LoRA (video-to-video) condition the reference stage
encodes and ``aiprod-recipes sample --reference-canny`` builds from a user's video."""

from __future__ import annotations

import cv2
import numpy as np

from aiprod_recipes.spec import Reference


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
