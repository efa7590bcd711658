"""Find hard cuts with PySceneDetect and turn scenes into training-sized pieces.

A training sample that spans a cut teaches the model that scenes teleport, so raw clips
are split at cuts first; scenes are then trimmed to the length range that the video
buckets can use (too short: dropped; too long: split into near-equal parts).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import scenedetect
from scenedetect import (
    AdaptiveDetector,
    ContentDetector,
    HistogramDetector,
    SceneManager,
    ThresholdDetector,
)

from aiprod_recipes.media.errors import MediaError
from aiprod_recipes.media.probe import probe

Scene = tuple[float, float]

# detector name -> (factory, the params a user may set); strict so typos fail loudly.
DETECTORS: dict[str, tuple[Callable[..., Any], frozenset[str]]] = {
    "content": (ContentDetector, frozenset({"threshold"})),
    "adaptive": (
        AdaptiveDetector,
        frozenset({"adaptive_threshold", "min_content_val", "window_width"}),
    ),
    "threshold": (ThresholdDetector, frozenset({"threshold", "fade_bias"})),
    "histogram": (HistogramDetector, frozenset({"threshold", "bins"})),
}


def make_detector(name: str, params: Mapping[str, Any], min_scene_frames: int) -> Any:
    """Build a PySceneDetect detector from a name and only the params it understands."""
    if name not in DETECTORS:
        raise ValueError(
            f"unknown scene detector {name!r}; use one of {sorted(DETECTORS)} or 'none'"
        )
    factory, allowed = DETECTORS[name]
    unknown = set(params) - allowed
    if unknown:
        raise ValueError(
            f"detector {name!r} does not take {sorted(unknown)}; allowed: {sorted(allowed)}"
        )
    return factory(min_scene_len=min_scene_frames, **params)


def _seconds(timecode: Any) -> float:
    """FrameTimecode seconds across PySceneDetect versions (0.7 property, 0.6 method)."""
    value = getattr(timecode, "seconds", None)
    return float(value) if value is not None else float(timecode.get_seconds())


def detect_scenes(
    path: str | Path,
    detector: str = "content",
    params: Mapping[str, Any] | None = None,
    min_scene_frames: int = 15,
    *,
    duration_s: float | None = None,
) -> list[Scene]:
    """``(start_s, end_s)`` of each scene; a clip without cuts is one scene.

    ``detector="none"`` skips detection (for sources known to be single shots).
    ``duration_s``: the clip's duration when the caller has probed it already (opening a
    file costs about as much as decoding a few frames, which is much of a short clip).
    """
    if duration_s is None:
        duration_s = probe(path).duration_s  # rejects unusable files with a clear reason
    whole = [(0.0, duration_s)]
    if detector == "none":
        return whole
    det = make_detector(detector, dict(params or {}), min_scene_frames)
    try:
        video = scenedetect.open_video(str(path))
    except Exception as exc:  # PySceneDetect's open errors vary by backend and version
        raise MediaError(f"scene detection could not open the video: {exc}", path) from exc
    manager = SceneManager()
    manager.add_detector(det)
    manager.detect_scenes(video=video)
    scenes = [(_seconds(a), _seconds(b)) for a, b in manager.get_scene_list()]
    return scenes or whole


def split_long(scenes: list[Scene], min_duration_s: float, max_duration_s: float) -> list[Scene]:
    """Drop scenes shorter than min; cut longer-than-max ones into near-equal parts.

    The fewest parts that each fit under ``max_duration_s`` are used, which keeps every
    part as long (and so as far above ``min_duration_s``) as possible.
    """
    if not 0 <= min_duration_s <= max_duration_s or max_duration_s <= 0:
        raise ValueError(f"need 0 <= min ({min_duration_s}) <= max ({max_duration_s}), max > 0")
    out: list[Scene] = []
    for start, end in scenes:
        length = end - start
        if length < min_duration_s or length <= 0:
            continue
        parts = max(1, math.ceil(length / max_duration_s - 1e-9))
        step = length / parts
        out.extend(
            (start + i * step, end if i == parts - 1 else start + (i + 1) * step)
            for i in range(parts)
        )
    return out
