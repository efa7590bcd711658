"""Read a clip's container header: what is in it, how long, how big.

Probing is cheap (no decoding), so ingest probes every raw clip first and rejects the
obviously unusable ones (empty, not media, no video, absurd frame size) with a clear
reason before spending time on decoding.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.container

from aiprod_recipes.media.errors import MediaError

MAX_WIDTH = 7680
MAX_HEIGHT = 4320


@dataclass(frozen=True)
class MediaInfo:
    """What a clip's header says about it (estimates where the header is vague)."""

    duration_s: float
    fps: float
    width: int
    height: int
    frame_count: int
    has_audio: bool
    audio_channels: int
    audio_sample_rate: int
    video_codec: str


def _unreadable_reason(path: Path) -> str:
    """Tell a cut-off MP4/MOV (a common upload failure) apart from a non-media file."""
    with path.open("rb") as fh:
        head = fh.read(12)
    if head[4:8] == b"ftyp":
        return "truncated or incomplete MP4/MOV: its index (moov box) is missing"
    return "not a media file: could not read a container header"


@contextmanager
def open_input(path: str | Path) -> Iterator[av.container.InputContainer]:
    """Open ``path`` for reading, turning FFmpeg's open failures into ``MediaError``.

    The checks before ``av.open`` exist because FFmpeg's own message for an empty file
    ("Invalid data found") does not tell the user what is actually wrong.
    """
    p = Path(path)
    if not p.is_file():
        raise MediaError("file not found", p)
    if p.stat().st_size == 0:
        raise MediaError("file is empty (0 bytes)", p)
    try:
        container = av.open(str(p), mode="r")
    except av.error.InvalidDataError as exc:
        raise MediaError(_unreadable_reason(p), p) from exc
    except av.error.FFmpegError as exc:
        raise MediaError(f"could not open the container: {exc}", p) from exc
    try:
        yield container
    finally:
        container.close()


def first_video_stream(container: av.container.InputContainer, path: str | Path) -> av.VideoStream:
    """The clip's first video stream; a container without one is not a usable clip."""
    if not container.streams.video:
        raise MediaError("no video stream", path)
    return container.streams.video[0]


def stream_fps(stream: av.VideoStream) -> Fraction:
    """Average frame rate, falling back to FFmpeg's guess when the header has none."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        raise MediaError("video stream has no frame rate")
    return Fraction(rate)


def container_duration_s(container: av.container.InputContainer, stream: av.VideoStream) -> float:
    """Video duration in seconds: the stream's own when known, else the container's."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def time_origin(container: av.container.InputContainer) -> Fraction:
    """The instant that counts as t = 0: the first video frame's presentation time.

    MPEG-TS and many camera files start their clocks well above zero; measuring both
    video and audio from the video's start keeps them in sync and makes ``start_s``
    mean "seconds into the clip" whatever the container's clock says.
    """
    streams = list(container.streams.video) + list(container.streams.audio)
    for stream in streams[:1]:
        if stream.start_time is not None and stream.time_base is not None:
            return stream.start_time * Fraction(stream.time_base)
    return Fraction(0)


def probe(path: str | Path) -> MediaInfo:
    """Describe a clip from its header, raising ``MediaError`` when it is not usable."""
    with open_input(path) as container:
        video = first_video_stream(container, path)
        fps = stream_fps(video)
        duration = container_duration_s(container, video)
        frames = video.frames or round(duration * fps)
        audio = container.streams.audio[0] if container.streams.audio else None
        ctx = video.codec_context
        return MediaInfo(
            duration_s=duration,
            fps=float(fps),
            width=ctx.width,
            height=ctx.height,
            frame_count=int(frames),
            has_audio=audio is not None,
            audio_channels=audio.codec_context.channels if audio is not None else 0,
            audio_sample_rate=audio.codec_context.sample_rate if audio is not None else 0,
            video_codec=ctx.name,
        )


def check_frame_size(info: MediaInfo, max_w: int = MAX_WIDTH, max_h: int = MAX_HEIGHT) -> None:
    """Reject frame sizes the pipeline cannot handle, before decoding a single frame.

    Oversize frames would exhaust memory when decoded to RGB. Odd sizes are fine: ingest
    drops the last odd row or column (``as_yuv420p``), so a frame needs at least 2x2 pixels.
    """
    w, h = info.width, info.height
    if w <= 0 or h <= 0:
        raise MediaError(f"invalid frame size {w}x{h}")
    if w > max_w or h > max_h:
        raise MediaError(f"frame size {w}x{h} exceeds the {max_w}x{max_h} limit")
    if w < 2 or h < 2:
        raise MediaError(f"frame size {w}x{h} is too small (at least 2x2)")
