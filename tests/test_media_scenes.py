"""Scene cuts agree with PySceneDetect's own detect(); long scenes split evenly."""

from __future__ import annotations

import pytest
import scenedetect
from scenedetect import ContentDetector

from aiprod_recipes.media.errors import MediaError
from aiprod_recipes.media.scenes import detect_scenes, split_long
from tests.media_fixtures import SAMPLE_DIR, real_clip


def _cut_frames(scenes: list[tuple[float, float]], fps: float) -> list[int]:
    return [round(start * fps) for start, _ in scenes[1:]]


def test_bikes_cuts_match_pyscenedetect() -> None:
    path = real_clip("bikes.mp4")
    ours = detect_scenes(path, "content", {"threshold": 27.0}, min_scene_frames=15)
    reference = scenedetect.detect(str(path), ContentDetector(threshold=27.0, min_scene_len=15))
    ref_cuts = [round(start.seconds * 25) for start, _ in reference[1:]]
    our_cuts = _cut_frames(ours, 25)
    assert len(our_cuts) == len(ref_cuts) == 5
    assert all(abs(a - b) <= 2 for a, b in zip(our_cuts, ref_cuts, strict=True))
    assert ours[0][0] == 0.0 and ours[-1][1] == pytest.approx(10.0, abs=0.05)


@pytest.mark.parametrize(
    ("detector", "params"),
    [
        ("content", {}),
        ("adaptive", {"adaptive_threshold": 3.0, "min_content_val": 15.0, "window_width": 2}),
        ("histogram", {"threshold": 0.05, "bins": 64}),
    ],
)
def test_sample_cut_found_by_each_detector(detector: str, params: dict) -> None:
    path = SAMPLE_DIR / "scene_cut.mp4"
    if not path.is_file():
        pytest.skip("data/sample not generated")
    scenes = detect_scenes(path, detector, params, min_scene_frames=6)
    assert len(scenes) == 2
    assert scenes[1][0] == pytest.approx(1.5, abs=2 / 24)


def test_threshold_detector_on_clip_without_fades_is_one_scene() -> None:
    path = SAMPLE_DIR / "sunrise.mp4"
    if not path.is_file():
        pytest.skip("data/sample not generated")
    scenes = detect_scenes(path, "threshold", {"threshold": 12, "fade_bias": 0.0}, 10)
    assert scenes == [(0.0, pytest.approx(3.0, abs=0.05))]


def test_none_is_whole_clip() -> None:
    assert detect_scenes(real_clip("bikes.mp4"), "none", {}, 15) == [(0.0, 10.0)]
    # a caller that probed the clip already passes its duration (no second probe)
    assert detect_scenes(real_clip("bikes.mp4"), "none", {}, 15, duration_s=9.5) == [(0.0, 9.5)]


def test_unknown_detector_and_params() -> None:
    with pytest.raises(ValueError, match="unknown scene detector"):
        detect_scenes(real_clip("bikes.mp4"), "magic", {}, 15)
    with pytest.raises(ValueError, match="does not take"):
        detect_scenes(real_clip("bikes.mp4"), "content", {"treshold": 20}, 15)


def test_broken_input_is_media_error(tmp_path) -> None:
    (tmp_path / "x.mp4").write_bytes(b"")
    with pytest.raises(MediaError):
        detect_scenes(tmp_path / "x.mp4", "content", {}, 15)


def test_split_long() -> None:
    scenes = [(0.0, 0.5), (1.0, 4.0), (4.0, 14.0), (20.0, 21.0)]
    out = split_long(scenes, min_duration_s=1.0, max_duration_s=4.0)
    assert out[0] == (1.0, 4.0)
    ten = out[1:4]
    assert [round(b - a, 6) for a, b in ten] == [round(10 / 3, 6)] * 3
    assert ten[0][0] == 4.0 and ten[-1][1] == 14.0
    assert out[4] == (20.0, 21.0) and len(out) == 5


def test_split_long_exact_multiple_and_bounds() -> None:
    out = split_long([(0.0, 8.0)], 2.0, 4.0)
    assert out == [(0.0, 4.0), (4.0, 8.0)]
    for a, b in split_long([(0.0, 9.7)], 2.0, 4.0):
        assert 2.0 <= b - a <= 4.0
    with pytest.raises(ValueError):
        split_long([(0.0, 1.0)], 3.0, 2.0)
