"""Video decoding: timestamp resampling, seeking, VFR input, and damaged streams."""

from __future__ import annotations

import inspect
from pathlib import Path

import av
import numpy as np
import pytest

from aiprod_recipes.media.errors import MediaError
from aiprod_recipes.media.report import DecodeReport
from aiprod_recipes.media.video import SceneFrames, decode_frames, iter_frames
from tests.media_fixtures import (
    damage_packets,
    make_clip,
    make_ts,
    make_vfr,
    pattern_frames,
    real_clip,
)


@pytest.fixture(scope="module")
def bikes_frames() -> np.ndarray:
    return decode_frames(real_clip("bikes.mp4"), 25)


def test_native_rate_matches_plain_pyav(bikes_frames: np.ndarray) -> None:
    with av.open(str(real_clip("bikes.mp4"))) as container:
        plain = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert bikes_frames.shape == (250, 272, 640, 3) and bikes_frames.dtype == np.uint8
    assert np.array_equal(bikes_frames, np.stack(plain))


def test_seek_range_equals_slice_of_full_decode(bikes_frames: np.ndarray) -> None:
    report = DecodeReport()
    part = decode_frames(real_clip("bikes.mp4"), 25, start_s=6.0, end_s=7.2, report=report)
    assert part.shape[0] == 30
    assert np.array_equal(part, bikes_frames[150:180])
    assert not report.damaged


def test_downsample_picks_frames_by_time(bikes_frames: np.ndarray) -> None:
    times, frames = zip(*iter_frames(real_clip("bikes.mp4"), 10, end_s=2.0), strict=True)
    assert np.allclose(times, np.arange(20) / 10)
    # output t = k/10 shows source frame floor(t * 25)
    for k, frame in enumerate(frames):
        assert np.array_equal(frame, bikes_frames[(k * 5) // 2])


def test_iter_frames_is_lazy(tmp_path: Path) -> None:
    it = iter_frames(make_clip(tmp_path / "c.mp4", n=24), 24)
    assert inspect.isgenerator(it)
    t0, first = next(it)
    assert t0 == 0.0 and first.shape == (96, 128, 3)
    it.close()


def test_upsample_repeats_frames(tmp_path: Path) -> None:
    path = make_clip(tmp_path / "c.mp4", n=24, fps=12)
    frames = decode_frames(path, 24)
    assert frames.shape[0] == 48
    assert all(np.array_equal(frames[2 * i], frames[2 * i + 1]) for i in range(24))


def test_vfr_resampled_by_timestamps(tmp_path: Path) -> None:
    pts_ms = [0, 40, 50, 120, 300, 310, 320, 500, 560, 700]
    path = make_vfr(tmp_path / "vfr.mp4", pts_ms)
    times, frames = zip(*iter_frames(path, 20), strict=True)
    pts = np.asarray(pts_ms) / 1000
    for t, frame in zip(times, frames, strict=True):
        expected = int(np.searchsorted(pts, t + 1e-9, side="right")) - 1
        assert abs(int(frame.mean()) - 20 * expected) <= 3, (t, expected, frame.mean())
    assert times[0] == 0.0 and times[-1] == pytest.approx(0.7)


def test_corrupt_packets_mid_stream_keep_the_rest(tmp_path: Path) -> None:
    clean = make_clip(tmp_path / "clean.mp4", n=48)
    broken = damage_packets(clean, tmp_path / "broken.mp4", slice(20, 23))
    report = DecodeReport()
    frames = decode_frames(broken, 24, report=report)
    assert frames.shape[0] == 48  # every output time still gets a frame
    assert report.damaged and report.bad_packets >= 1
    assert report.frames_decoded >= 40
    assert any("bad packet" in m for m in report.messages)


def _packet_times(path: Path) -> list[float]:
    """Presentation time of each video packet in decode order (as ``damage_packets`` counts)."""
    with av.open(str(path)) as container:
        return [round(float(p.pts * p.time_base), 6) for p in container.demux(video=0)
                if p.size and p.pos >= 0]


@pytest.mark.parametrize("which", [20, 45])  # mid-stream, and among the last packets
def test_damage_is_timed_at_the_bad_packet(tmp_path: Path, which: int) -> None:
    clean = make_clip(tmp_path / "clean.mp4", n=48)
    broken = damage_packets(clean, tmp_path / "broken.mp4", slice(which, which + 1))
    report = DecodeReport()
    frames = [f for _, f in iter_frames(broken, 24, report=report, frame_threads=False)]
    assert len(frames) == 48
    bad = [d for d in report.events if d.what.startswith("bad packet")]
    assert [(d.time_s, d.stream) for d in bad] == [(_packet_times(clean)[which], "video")]
    assert report.bad_packets == 1


def test_all_video_packets_garbage(tmp_path: Path) -> None:
    clean = make_clip(tmp_path / "clean.mp4", n=24)
    broken = damage_packets(clean, tmp_path / "garbage.mp4", slice(None))
    report = DecodeReport()
    with pytest.raises(MediaError) as err:
        decode_frames(broken, 24, report=report)
    assert err.value.reason == "no decodable video frames"
    assert report.bad_packets > 0


def test_range_past_the_end(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="no video frames between"):
        decode_frames(make_clip(tmp_path / "c.mp4", n=24), 24, start_s=5.0, end_s=6.0)


def test_end_beyond_clip_holds_last_frame_only_for_its_duration(tmp_path: Path) -> None:
    frames = decode_frames(make_clip(tmp_path / "c.mp4", n=24), 24, end_s=10.0)
    assert frames.shape[0] == 24


def test_bad_range_is_a_caller_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        decode_frames(make_clip(tmp_path / "c.mp4", n=12), 24, start_s=1.0, end_s=0.5)


def test_ts_clock_offset_and_inexact_seek(tmp_path: Path) -> None:
    path = make_ts(tmp_path / "cam.ts")
    full = decode_frames(path, 24)
    assert full.shape[0] == 48
    assert np.abs(full[0].astype(int) - pattern_frames(1)[0].astype(int)).mean() < 4
    part = decode_frames(path, 24, start_s=1.0, end_s=1.5)
    assert np.array_equal(part, full[24:36])


def test_ts_damage_shows_as_gap(tmp_path: Path) -> None:
    path = make_ts(tmp_path / "cam.ts")
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 3000] = np.random.default_rng(0).bytes(3000)
    (tmp_path / "hurt.ts").write_bytes(bytes(data))
    report = DecodeReport()
    frames = decode_frames(tmp_path / "hurt.ts", 24, report=report)
    assert frames.shape[0] == 48 and report.frames_decoded < 48
    assert report.gaps + report.bad_packets >= 1


SCENES = [(0.0, 1.2), (1.2, 3.04), (3.04, 5.48), (5.5, 7.48), (9.0, 9.68)]
"""bikes.mp4's cuts (each on a keyframe), with a gap and a range near the end."""


@pytest.mark.parametrize("fps", [25, 24])
def test_scene_frames_match_iter_frames_from_one_decode(fps: int) -> None:
    path = real_clip("bikes.mp4")
    report = DecodeReport()
    with SceneFrames(path, fps, report=report) as video:
        for start, end in SCENES:
            ours = [(t, f) for t, f in video.frames(start, end)]
            theirs = list(iter_frames(path, fps, start, end))
            assert [t for t, _ in ours] == [t for t, _ in theirs]
            assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(ours, theirs, strict=True))
    assert report.frames_decoded <= 250  # every packet decoded at most once


def test_scene_frames_on_an_mpeg_ts_without_an_index(tmp_path: Path) -> None:
    path = make_ts(tmp_path / "cam.ts", n=96)
    ranges = [(0.0, 1.0), (1.0, 2.5), (3.0, 4.0)]
    with SceneFrames(path, 24) as video:
        parts = [np.stack([f for _, f in video.frames(a, b)]) for a, b in ranges]
    full = decode_frames(path, 24)
    assert np.array_equal(np.concatenate(parts), np.concatenate([full[:60], full[72:]]))


def test_scene_frames_want_ranges_in_order_and_inside_the_clip(tmp_path: Path) -> None:
    path = make_clip(tmp_path / "c.mp4", n=24)
    with SceneFrames(path, 24) as video:
        assert len(list(video.frames(0.5, 0.75))) == 6
        with pytest.raises(ValueError, match="increasing"):
            list(video.frames(0.25, 0.5))
        with pytest.raises(MediaError, match="no video frames between"):
            list(video.frames(2.0, 3.0))
