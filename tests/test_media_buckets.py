"""Bucket choice and fitting for frames of any size and aspect, odd ingest sizes included."""

from __future__ import annotations

import numpy as np
import pytest

from aiprod_recipes.media.buckets import Bucket, choose_bucket, fit_frames

BUCKETS = [Bucket(64, 64, 9), Bucket(96, 64, 9), Bucket(64, 96, 9)]


def _ramps(n: int, width: int, height: int) -> np.ndarray:
    """Red rises left to right, green top to bottom: the centre is (127, 127) at any size."""
    out = np.zeros((n, height, width, 3), np.uint8)
    out[..., 0] = np.linspace(0, 255, width)[None, None, :]
    out[..., 1] = np.linspace(0, 255, height)[None, :, None]
    return out


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((720, 404), "96x64x9"),  # 721x405 after ingest's even crop
        ((404, 720), "64x96x9"),
        ((640, 640), "64x64x9"),
        ((1000, 2), "96x64x9"),
        ((2, 1000), "64x96x9"),
        ((2, 2), "64x64x9"),
    ],
)
def test_any_aspect_is_scaled_to_cover_and_centre_cropped(size: tuple[int, int],
                                                          expected: str) -> None:
    width, height = size
    bucket = choose_bucket(BUCKETS, width, height, 12)
    assert bucket is not None and bucket.name == expected
    out = fit_frames(_ramps(12, width, height), bucket, None)
    assert out.shape == (9, bucket.height, bucket.width, 3)
    centre = out[0, bucket.height // 2, bucket.width // 2, :2].astype(int)
    assert np.all(np.abs(centre - 127) <= 16), centre


def test_random_crop_stays_inside_the_picture() -> None:
    frames = _ramps(9, 1000, 2)
    rng = np.random.default_rng(0)
    for _ in range(5):
        out = fit_frames(frames, Bucket(96, 64, 9), rng)
        assert out.shape == (9, 64, 96, 3)
        assert out[..., 1].min() < 64 and out[..., 1].max() > 190  # full height is kept
