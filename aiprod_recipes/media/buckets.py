"""Resolution/frame buckets: which bucket a clip goes to, and how its frames are fitted.

LTX-2 trains on fixed shapes (W, H multiples of 32, 8k + 1 frames). A clip takes the bucket
with the nearest aspect ratio, then the most frames it can fill, then the largest area, so
that little of the picture is cropped and as much of the clip as possible is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Bucket:
    width: int
    height: int
    frames: int

    @property
    def name(self) -> str:
        return f"{self.width}x{self.height}x{self.frames}"


def choose_bucket(buckets: list[Bucket], width: int, height: int, frames: int) -> Bucket | None:
    """The best bucket for a clip, or None when the clip is shorter than every bucket."""
    fitting = [b for b in buckets if b.frames <= frames]
    if not fitting:
        return None
    aspect = math.log(width / height)
    return min(
        fitting,
        key=lambda b: (
            round(abs(math.log(b.width / b.height) - aspect), 6),
            -b.frames,
            -b.width * b.height,
        ),
    )


def crop_box(
    src_w: int, src_h: int, dst_w: int, dst_h: int, rng: np.random.Generator | None
) -> tuple[float, int, int]:
    """Scale that covers the bucket, and the crop offset (centre, or random from ``rng``)."""
    scale = max(dst_w / src_w, dst_h / src_h)
    new_w, new_h = max(dst_w, round(src_w * scale)), max(dst_h, round(src_h * scale))
    if rng is None:
        return scale, (new_w - dst_w) // 2, (new_h - dst_h) // 2
    return scale, int(rng.integers(0, new_w - dst_w + 1)), int(rng.integers(0, new_h - dst_h + 1))


def fit_frames(frames: np.ndarray, bucket: Bucket, rng: np.random.Generator | None) -> np.ndarray:
    """First ``bucket.frames`` frames, resized to cover the bucket and cropped to it."""
    import cv2  # OpenCV is loaded only when frames are fitted

    clip = frames[: bucket.frames]
    h, w = clip.shape[1:3]
    scale, x, y = crop_box(w, h, bucket.width, bucket.height, rng)
    new_w, new_h = max(bucket.width, round(w * scale)), max(bucket.height, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    out = np.empty((len(clip), bucket.height, bucket.width, 3), np.uint8)
    for i, frame in enumerate(clip):
        resized = cv2.resize(frame, (new_w, new_h), interpolation=interp)
        out[i] = resized[y : y + bucket.height, x : x + bucket.width]
    return out
