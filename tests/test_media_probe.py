"""probe() and check_frame_size() on real clips and on inputs broken in every usual way."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from aiprod_recipes.media.errors import MediaError
from aiprod_recipes.media.probe import check_frame_size, probe
from tests.media_fixtures import make_audio_only, make_clip, real_clip


def test_probe_bikes() -> None:
    info = probe(real_clip("bikes.mp4"))
    assert (info.width, info.height, info.video_codec) == (640, 272, "h264")
    assert info.fps == pytest.approx(25.0)
    assert info.duration_s == pytest.approx(10.0, abs=0.05)
    assert info.frame_count == 250
    assert not info.has_audio and info.audio_channels == 0


def test_probe_bigbuckbunny_has_51_audio() -> None:
    info = probe(real_clip("bigbuckbunny.mp4"))
    assert (info.width, info.height) == (1280, 720)
    assert info.has_audio and info.audio_channels == 6 and info.audio_sample_rate == 48000


def test_probe_own_encode(tmp_path: Path) -> None:
    info = probe(make_clip(tmp_path / "c.mp4", n=36, fps=24, audio=True))
    assert info.frame_count == 36 and info.fps == pytest.approx(24.0)
    assert info.duration_s == pytest.approx(1.5, abs=0.01)
    assert info.has_audio and info.audio_sample_rate == 16000 and info.audio_channels == 1


def _reason(path: Path) -> str:
    with pytest.raises(MediaError) as err:
        probe(path)
    return err.value.reason


def test_zero_byte_file(tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert _reason(tmp_path / "empty.mp4") == "file is empty (0 bytes)"


def test_missing_file(tmp_path: Path) -> None:
    assert _reason(tmp_path / "nope.mp4") == "file not found"


def test_truncated_mp4(tmp_path: Path) -> None:
    data = real_clip("bikes.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: int(len(data) * 0.3)])
    assert "truncated" in _reason(tmp_path / "cut.mp4")


def test_random_bytes(tmp_path: Path) -> None:
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(50_000))
    assert _reason(tmp_path / "noise.mp4").startswith("not a media file")


def test_text_file_named_mov(tmp_path: Path) -> None:
    (tmp_path / "notes.mov").write_text("this is not a movie\n" * 200)
    assert _reason(tmp_path / "notes.mov").startswith("not a media file")


def test_audio_only(tmp_path: Path) -> None:
    assert _reason(make_audio_only(tmp_path / "voice.mp4")) == "no video stream"


@pytest.mark.parametrize(
    ("size", "reason"),
    [
        ((9000, 9000), "frame size 9000x9000 exceeds the 7680x4320 limit"),
        ((1, 480), "frame size 1x480 is too small (at least 2x2)"),
        ((640, 0), "invalid frame size 640x0"),
    ],
)
def test_check_frame_size_rejects(size: tuple[int, int], reason: str) -> None:
    info = replace(probe(real_clip("bikes.mp4")), width=size[0], height=size[1])
    with pytest.raises(MediaError) as err:
        check_frame_size(info)
    assert err.value.reason == reason


def test_check_frame_size_accepts_and_honours_limits() -> None:
    info = probe(real_clip("bikes.mp4"))
    check_frame_size(info)
    check_frame_size(replace(info, width=721, height=405))  # odd: ingest crops one line
    with pytest.raises(MediaError, match="exceeds the 320x240 limit"):
        check_frame_size(info, max_w=320, max_h=240)
