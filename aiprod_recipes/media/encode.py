"""Write frames (and optional audio) as a deterministic H.264 + AAC mp4.

Normalized clips are DVC outputs: if re-encoding the same frames gave different bytes,
every downstream stage would rerun for nothing.  So every knob that can vary between
runs or machines is pinned: a fixed x264 thread count (x264's output depends on it), no
macroblock-tree rate control (its AVX-512 kernels let leftover memory into small clips),
the muxer's bitexact mode (no library version or creation time in the header), fixed
encoder options, and exact rational timestamps.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import av.container
import numpy as np

from aiprod_recipes.media.errors import MediaError
from aiprod_recipes.names import MODEL_AUDIO_RATE

AUDIO_CHUNK = 1024  # samples per AAC frame
LAYOUTS = {1: "mono", 2: "stereo"}


def even_crop(frame: np.ndarray) -> np.ndarray:
    """``frame`` without its last row and/or column when its height or width is odd.

    yuv420p, the pixel format every player reads, needs even sizes. Dropping one edge line
    keeps every other pixel exactly as decoded, where scaling to an even size would
    resample the whole picture (and blur it) to move the aspect ratio by the same sliver.
    The result is a view (no copy); the encoder reads strided frames as they are.
    """
    h, w = frame.shape[:2]
    return frame if not (h % 2 or w % 2) else frame[: h - h % 2, : w - w % 2]


def _check_frame(frame: np.ndarray, shape: tuple[int, ...]) -> None:
    """Every frame must match the first: the stream's size is fixed at open time."""
    if frame.dtype != np.uint8 or frame.shape != shape:
        raise ValueError(f"frame {frame.shape} {frame.dtype} does not match {shape} uint8")


def _first_frame(frames: Iterable[np.ndarray]) -> tuple[np.ndarray, Iterator[np.ndarray]]:
    """Peek at the first frame (it fixes the size) without losing it from the stream."""
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise ValueError("no frames to encode")
    if first.ndim != 3 or first.shape[2] != 3 or first.dtype != np.uint8:
        raise ValueError(f"frames must be [H, W, 3] uint8, got {first.shape} {first.dtype}")
    h, w = first.shape[:2]
    if w % 2 or h % 2:
        raise MediaError(f"odd frame size {w}x{h}")
    return first, itertools.chain([first], it)


def _check_audio(audio: np.ndarray) -> np.ndarray:
    """Audio as contiguous float32 ``[C, T]`` with 1 or 2 channels (what AAC gets)."""
    if audio.ndim != 2 or audio.shape[0] not in LAYOUTS:
        raise ValueError(f"audio must be [1 or 2, T], got {audio.shape}")
    return np.ascontiguousarray(np.clip(audio, -1.0, 1.0), dtype=np.float32)


def _add_video(
    container: av.container.OutputContainer,
    shape: tuple[int, ...],
    rate: Fraction,
    crf: int,
    preset: str,
    threads: int,
) -> av.VideoStream:
    stream = container.add_stream("libx264", rate=rate)
    stream.height, stream.width = shape[:2]
    stream.pix_fmt = "yuv420p"
    stream.codec_context.time_base = 1 / rate
    stream.options = {
        "crf": str(crf),
        "preset": preset,
        "threads": str(threads),
        "flags": "+bitexact",
        # x264's macroblock-tree rate control gave different bytes for the same small frames
        # from one call to the next: on a CPU with AVX-512 its AVX-512 kernels let leftover
        # memory into the result (what else the process had run decided it; capped at AVX2,
        # or with no asm, the bytes were stable). Evaluate's samples, re-encoded every run,
        # came out different in some full `dvc repro` runs. Without mbtree every size tried
        # encodes identically, and AVX-512 and AVX2 machines give the same bytes.
        "x264-params": "mbtree=0",
    }
    return stream


def _add_audio(
    container: av.container.OutputContainer, channels: int, sample_rate: int, bitrate: int
) -> av.AudioStream:
    stream = container.add_stream("aac", rate=sample_rate)
    stream.layout = LAYOUTS[channels]
    stream.bit_rate = bitrate
    stream.options = {"flags": "+bitexact"}
    return stream


class _AudioFeeder:
    """Feeds audio in step with video so the muxer never buffers a whole track."""

    def __init__(self, stream: av.AudioStream, audio: np.ndarray, sample_rate: int) -> None:
        self.stream, self.audio, self.sample_rate = stream, audio, sample_rate
        self.pos = 0

    def packets_until(self, t: Fraction) -> Iterator[av.Packet]:
        limit = min(self.audio.shape[1], int(t * self.sample_rate))
        while self.pos < limit:
            chunk = self.audio[:, self.pos : self.pos + AUDIO_CHUNK]
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(chunk), format="fltp", layout=self.stream.layout.name
            )
            frame.sample_rate, frame.pts = self.sample_rate, self.pos
            frame.time_base = Fraction(1, self.sample_rate)
            self.pos += chunk.shape[1]
            yield from self.stream.encode(frame)

    def flush(self) -> Iterator[av.Packet]:
        yield from self.packets_until(Fraction(self.audio.shape[1], self.sample_rate))
        yield from self.stream.encode(None)


def encode_mp4(
    dest: str | Path | BinaryIO,
    frames: Iterable[np.ndarray],
    fps: float | Fraction,
    audio: np.ndarray | None = None,
    sample_rate: int = MODEL_AUDIO_RATE,
    crf: int = 18,
    *,
    preset: str = "medium",
    audio_bitrate: int = 128_000,
    threads: int = 4,
) -> None:
    """Encode ``[H, W, 3]`` uint8 RGB frames (and ``[C, T]`` float32 audio) to mp4.

    Same inputs, same bytes.  Frame sizes must be even (yuv420p); an odd size raises
    ``MediaError`` (``even_crop`` makes any frame fit).  ``frames`` may be any iterable,
    so long clips stream through.
    """
    rate = Fraction(fps).limit_denominator(1001)
    first, stream_of_frames = _first_frame(frames)
    pcm = None if audio is None else _check_audio(audio)
    target = str(dest) if isinstance(dest, str | Path) else dest
    with av.open(target, mode="w", format="mp4", options={"fflags": "+bitexact"}) as container:
        video = _add_video(container, first.shape, rate, crf, preset, threads)
        feeder = None
        if pcm is not None:
            feeder = _AudioFeeder(
                _add_audio(container, pcm.shape[0], sample_rate, audio_bitrate), pcm, sample_rate
            )
        for i, array in enumerate(stream_of_frames):
            _check_frame(array, first.shape)
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts, frame.time_base = i, 1 / rate
            container.mux(video.encode(frame))
            if feeder is not None:
                container.mux(list(feeder.packets_until((i + 1) / rate)))
        container.mux(video.encode(None))
        if feeder is not None:
            container.mux(list(feeder.flush()))
