"""Audio decoding: 5.1 down-mix, exact lengths, ranges, and clips without audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aiprod_recipes.media.audio import decode_audio
from aiprod_recipes.media.probe import probe
from aiprod_recipes.media.report import DecodeReport
from tests.media_fixtures import (
    make_audio_only,
    make_clip,
    make_mpeg2,
    make_ts,
    real_clip,
    tone,
)


@pytest.mark.parametrize("channels", [1, 2])
def test_bigbuckbunny_51_downmix(channels: int) -> None:
    path = real_clip("bigbuckbunny.mp4")
    pcm = decode_audio(path, 16000, channels)
    assert pcm is not None and pcm.dtype == np.float32
    assert pcm.shape == (channels, round(probe(path).duration_s * 16000))
    rms = np.sqrt(np.mean(pcm**2, axis=1))
    assert np.all(rms > 1e-3) and np.abs(pcm).max() <= 1.5


def test_range_length_is_exact_and_matches_full_decode() -> None:
    path = real_clip("bigbuckbunny.mp4")
    full = decode_audio(path, 16000, 2)
    part = decode_audio(path, 16000, 2, start_s=1.37, end_s=2.91)
    assert part is not None and full is not None
    assert part.shape == (2, round((2.91 - 1.37) * 16000))
    i = round(1.37 * 16000)
    assert np.abs(part - full[:, i : i + part.shape[1]]).max() < 1e-3


def test_range_past_the_end_is_zero_padded() -> None:
    path = real_clip("bigbuckbunny.mp4")
    pcm = decode_audio(path, 16000, 1, start_s=4.0, end_s=8.0)
    assert pcm is not None and pcm.shape == (1, 64000)
    assert np.all(pcm[:, -16000:] == 0)


def test_no_audio_returns_none() -> None:
    assert decode_audio(real_clip("bikes.mp4")) is None


def test_own_encode_roundtrip(tmp_path: Path) -> None:
    pcm = decode_audio(make_clip(tmp_path / "c.mp4", n=24, fps=24, audio=True), 16000, 1)
    assert pcm is not None and pcm.shape == (1, 16000)
    spectrum = np.abs(np.fft.rfft(pcm[0, 2000:14000]))
    assert np.argmax(spectrum) * 16000 / 12000 == pytest.approx(440, abs=3)


def test_audio_only_file_decodes(tmp_path: Path) -> None:
    pcm = decode_audio(make_audio_only(tmp_path / "a.m4a", seconds=1.0), 16000, 1)
    assert pcm is not None and pcm.shape[0] == 1 and abs(pcm.shape[1] - 16000) <= 1024


def test_bad_channel_count() -> None:
    with pytest.raises(ValueError):
        decode_audio(real_clip("bigbuckbunny.mp4"), 16000, 6)


def test_ts_audio_measured_from_video_start(tmp_path: Path) -> None:
    pcm = decode_audio(make_ts(tmp_path / "cam.ts"), 16000, 1)
    assert pcm is not None and pcm.shape == (1, 32000)
    ref = tone(2.0)[0]
    lag = int(np.argmax(np.correlate(pcm[0, 4000:8000], ref[4000 - 40 : 8000 + 40], "valid")))
    assert abs(lag - 40) <= 2  # within 2 samples of the encoded position


def test_a_seek_into_an_mpeg_program_stream_is_not_damage(tmp_path: Path) -> None:
    """MPEG-PS has no index: a seek lands mid-packet and the first MP2 frames do not decode.
    That is the seek's doing, so it is noted but not reported as damage, and the samples
    match a decode from the start."""
    path = make_mpeg2(tmp_path / "dvd.mpg", n=50, width=64, height=48)
    report = DecodeReport()
    part = decode_audio(path, 48000, 2, 0.5, 1.5, report=report)
    assert not report.damaged and report.events == []
    assert any("right after a seek" in m for m in report.messages)
    full = decode_audio(path, 48000, 2)
    assert np.abs(part - full[:, 24000:72000]).max() < 1e-4
