"""Tiny numpy painters and sound makers for the synthetic sample dataset.

The sample clips must be byte-identical on every run, so everything here is plain
numpy arithmetic on fixed grids with seeded ``np.random.default_rng`` noise: no fonts,
no system codecs, no clocks.
"""

from __future__ import annotations

import numpy as np

Color = tuple[int, int, int]


def grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y) as float32 ``[H, W]`` arrays."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    return xs, ys


def vertical_gradient(width: int, height: int, top: Color, bottom: Color) -> np.ndarray:
    """A float32 ``[H, W, 3]`` canvas blending ``top`` into ``bottom``."""
    a = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    row = (1 - a) * np.asarray(top, np.float32) + a * np.asarray(bottom, np.float32)
    return np.repeat(row, width, axis=1)


def paint(canvas: np.ndarray, mask: np.ndarray, color: Color) -> None:
    """Blend ``color`` into ``canvas`` with coverage ``mask`` in [0, 1] (in place)."""
    m = mask[..., None]
    canvas *= 1 - m
    canvas += m * np.asarray(color, np.float32)


def disc(xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    """Anti-aliased disc coverage, so motion looks smooth rather than jittery."""
    dist = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)
    return np.clip(r - dist + 0.5, 0.0, 1.0)


def paint_disc(canvas: np.ndarray, cx: float, cy: float, r: float, color: Color) -> None:
    """Paint a small disc touching only its bounding box (fast for many small dots)."""
    h, w = canvas.shape[:2]
    x0, x1 = max(int(cx - r - 1), 0), min(int(cx + r + 2), w)
    y0, y1 = max(int(cy - r - 1), 0), min(int(cy + r + 2), h)
    if x0 >= x1 or y0 >= y1:
        return
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
    paint(canvas[y0:y1, x0:x1], disc(xs, ys, cx, cy, r), color)


def square(
    xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, half: float, angle: float
) -> np.ndarray:
    """Coverage of a square of half-side ``half`` rotated by ``angle`` radians."""
    c, s = np.cos(angle), np.sin(angle)
    u = (xs - cx) * c + (ys - cy) * s
    v = -(xs - cx) * s + (ys - cy) * c
    return np.clip(half - np.maximum(np.abs(u), np.abs(v)) + 0.5, 0.0, 1.0)


def to_uint8(canvas: np.ndarray) -> np.ndarray:
    """Round a float canvas to the uint8 RGB the encoder takes."""
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def times(duration_s: float, sample_rate: int) -> np.ndarray:
    """Sample times in seconds (float64 so long phases do not lose precision)."""
    return np.arange(round(duration_s * sample_rate), dtype=np.float64) / sample_rate


def tone(t: np.ndarray, freq: float, amp: float) -> np.ndarray:
    """A sine with a soft second harmonic (pure sines sound like test equipment)."""
    phase = 2 * np.pi * freq * t
    return amp * (np.sin(phase) + 0.25 * np.sin(2 * phase))


def chirp(t: np.ndarray, f0: float, f1: float, amp: float) -> np.ndarray:
    """A tone gliding linearly from ``f0`` to ``f1`` Hz over ``t``."""
    freq = f0 + (f1 - f0) * t / max(float(t[-1]), 1e-9)
    phase = 2 * np.pi * np.cumsum(freq) * (t[1] - t[0])
    return amp * np.sin(phase)


def hits(
    t: np.ndarray,
    at: list[float],
    freq: float,
    decay_s: float,
    amp: float,
    rng: np.random.Generator,
    noise: float = 0.3,
) -> np.ndarray:
    """Percussive hits (decaying tone plus a noise transient) at the times ``at``."""
    out = np.zeros_like(t)
    for t0 in at:
        dt = t - t0
        env = np.where(dt >= 0, np.exp(-np.maximum(dt, 0) / decay_s), 0.0)
        burst = rng.standard_normal(t.shape) * noise
        out += amp * env * (np.sin(2 * np.pi * freq * np.maximum(dt, 0)) + burst)
    return out


def hiss(t: np.ndarray, amp: float, rng: np.random.Generator) -> np.ndarray:
    """Bright noise (first difference of white noise), like wind or falling snow."""
    white = rng.standard_normal(t.shape[0] + 1)
    return amp * np.diff(white) / 2


def fade_edges(signal: np.ndarray, sample_rate: int, fade_s: float = 0.01) -> np.ndarray:
    """Short fades at both ends so clips do not start or stop with a click."""
    n = min(round(fade_s * sample_rate), signal.shape[-1] // 2)
    ramp = np.linspace(0.0, 1.0, n)
    out = signal.copy()
    out[..., :n] *= ramp
    out[..., signal.shape[-1] - n :] *= ramp[::-1]
    return out
