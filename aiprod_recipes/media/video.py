"""Decode video to RGB frames at a target frame rate, resampled by timestamps.

Training wants a fixed frame rate, but phone clips are often variable-frame-rate, so the
frame shown at output time ``t`` is chosen by presentation timestamp (the last decoded
frame with ``pts <= t``), never by frame index.  Frames stream out one at a time so that
memory stays flat however long the clip is, and only frames that are actually output are
converted to RGB, on worker threads that overlap with decoding.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from fractions import Fraction
from pathlib import Path

import av
import av.container
import numpy as np

from aiprod_recipes.media.errors import MediaError
from aiprod_recipes.media.probe import first_video_stream, open_input, stream_fps, time_origin
from aiprod_recipes.media.report import DecodeReport, decode_packets

RGB_WORKERS = 2  # conversion threads next to FFmpeg's own decoding threads
RGB_DEPTH = 4  # frames converted ahead of the consumer (bounds memory)


def as_fraction(value: float | Fraction, max_denominator: int = 1_000_000) -> Fraction:
    """Exact rational form of a time or rate, so that comparisons with pts never drift."""
    return Fraction(value).limit_denominator(max_denominator)


def _seek(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    start: Fraction,
    origin: Fraction,
    report: DecodeReport,
) -> bool:
    """Jump to the keyframe at or before ``start`` so we do not decode from zero.

    Aiming one nominal frame early guards against demuxers that seek by dts, which
    would otherwise land just after the first frame we need.  Returns whether it seeked.
    """
    target = start - 1 / stream_fps(stream)
    if target <= 0 or stream.time_base is None:
        return False
    try:
        container.seek(int((target + origin) / stream.time_base), stream=stream, backward=True)
    except av.error.FFmpegError as exc:
        report.note(f"seek failed, decoding from the start: {exc}")
        return False
    return True


def _rewind(container: av.container.InputContainer) -> None:
    """Back to the first packet: time 0 lies at or before every stream's start."""
    container.seek(0)


def _frames_from(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    start: Fraction,
    origin: Fraction,
    report: DecodeReport,
) -> Iterator[av.VideoFrame]:
    """Decoded frames beginning at or before ``start``.

    Demuxers without an index (MPEG-TS, some MKV) can seek onto a non-keyframe, after
    which nothing decodes until the next keyframe, possibly never; when the first frame
    after a seek is already past ``start`` (or never comes), decode from the beginning.
    """
    if not _seek(container, stream, start, origin, report):
        yield from decode_packets(container, stream, report, origin)
        return
    frames = decode_packets(container, stream, report, origin, after_seek=True)
    first = next(frames, None)
    if first is not None and (first.pts is None or first.pts * stream.time_base - origin <= start):
        yield first
        yield from frames
        return
    frames.close()
    report.note("seek landed past start_s; decoded from the beginning instead")
    _rewind(container)
    yield from decode_packets(container, stream, report, origin)


def _frame_duration(frame: av.VideoFrame, time_base: Fraction, nominal: Fraction) -> Fraction:
    """How long the last frame stays on screen: its own duration, else 1/average fps."""
    duration = getattr(frame, "duration", None)  # absent before PyAV 13
    if duration and time_base:
        return duration * time_base
    return nominal


class _Resampler:
    """Turns decoded (pts, frame) into frames at ``start + k/fps`` (hold-last rule)."""

    def __init__(self, fps: Fraction, start: Fraction, end: Fraction | None) -> None:
        self.step = 1 / fps
        self.start = start
        self.end = end
        self.k = 0
        self.held: av.VideoFrame | None = None

    @property
    def next_t(self) -> Fraction:
        return self.start + self.k * self.step

    def done(self) -> bool:
        return self.end is not None and self.next_t >= self.end

    def _emit_until(self, limit: Fraction) -> Iterator[tuple[Fraction, av.VideoFrame]]:
        """Output the held frame for every output time before ``limit``."""
        while self.held is not None and self.next_t < limit and not self.done():
            yield self.next_t, self.held
            self.k += 1

    def push(self, t: Fraction, frame: av.VideoFrame) -> Iterator[tuple[Fraction, av.VideoFrame]]:
        """A new frame at time ``t`` ends the held frame's reign at ``t``."""
        yield from self._emit_until(t)
        self.held = frame

    def finish(self, hold_until: Fraction) -> Iterator[tuple[Fraction, av.VideoFrame]]:
        """After the last frame: hold it for its own duration, not to ``end_s``."""
        yield from self._emit_until(hold_until)


def _timed_frames(
    path: str | Path,
    rate: Fraction,
    start: Fraction,
    end: Fraction | None,
    report: DecodeReport,
    frame_threads: bool,
) -> Iterator[tuple[Fraction, av.VideoFrame]]:
    """Decoded frames placed on the output time grid (still in decoder format)."""
    with open_input(path) as container:
        stream = first_video_stream(container, path)
        stream.thread_type = "AUTO" if frame_threads else "SLICE"
        time_base, nominal = Fraction(stream.time_base), 1 / stream_fps(stream)
        origin = time_origin(container)
        out = _Resampler(rate, start, end)
        last_t, last = Fraction(-1), None
        for frame in _frames_from(container, stream, start, origin, report):
            t = frame.pts * time_base - origin if frame.pts is not None else last_t + nominal
            if last is not None and t - last_t > 2 * nominal:
                report.gaps += 1
            yield from out.push(t, frame)
            last_t, last = t, frame
            if out.done():
                break
        if last is not None:
            yield from out.finish(last_t + _frame_duration(last, time_base, nominal))


class SceneFrames:
    """Frames of consecutive time ranges (scenes) of one clip, from one forward decode.

    ``iter_frames`` seeks for each range. A seek lands on the keyframe before the range
    (aimed one frame early, so when the encoder put a keyframe at the cut, that is the start
    of the previous scene), and containers without an index fall back to decoding from the
    start: cutting a clip into N scenes that way decodes much of it up to N times. Here each
    packet is decoded once, in order, and each range gets the same frames ``iter_frames``
    gives it (at each output time, the last frame shown at or before it). Ranges must come
    in time order, each consumed before the next is asked for.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float | Fraction,
        *,
        report: DecodeReport | None = None,
        frame_threads: bool = True,
    ) -> None:
        self.path = path
        self.rate = as_fraction(fps, 1001)
        self.report = report if report is not None else DecodeReport()
        self.frame_threads = frame_threads
        self._stack = ExitStack()
        self._decoded: Iterator[tuple[Fraction, av.VideoFrame]] | None = None
        self._recent: deque[tuple[Fraction, av.VideoFrame]] = deque(maxlen=2)
        self._tail: Fraction | None = None  # when the last frame's reign ends, once known
        self._after = Fraction(0)
        self._count = 0  # video frames decoded (the report may also count audio)

    def __enter__(self) -> SceneFrames:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _decode(self) -> Iterator[tuple[Fraction, av.VideoFrame]]:
        container = self._stack.enter_context(open_input(self.path))
        stream = first_video_stream(container, self.path)
        stream.thread_type = "AUTO" if self.frame_threads else "SLICE"
        time_base, nominal = Fraction(stream.time_base), 1 / stream_fps(stream)
        origin = time_origin(container)
        last_t, last = Fraction(-1), None
        for frame in decode_packets(container, stream, self.report, origin):
            t = frame.pts * time_base - origin if frame.pts is not None else last_t + nominal
            if last is not None and t - last_t > 2 * nominal:
                self.report.gaps += 1
            self._count += 1
            yield t, frame
            last_t, last = t, frame
        if last is not None:
            self._tail = last_t + _frame_duration(last, time_base, nominal)

    def _timed(self, start: Fraction, end: Fraction) -> Iterator[tuple[Fraction, av.VideoFrame]]:
        """The range's output grid, resuming the decode where the previous range stopped.

        The previous range stopped right after the frame that passed its end; that frame
        and the one before it are the only ones that can be shown at this range's start,
        so both are pushed again first.
        """
        if self._decoded is None:
            self._decoded = self._decode()
        out = _Resampler(self.rate, start, end)
        for t, frame in self._recent:
            yield from out.push(t, frame)
        if out.done():
            return
        for t, frame in self._decoded:
            self._recent.append((t, frame))
            yield from out.push(t, frame)
            if out.done():
                return
        if self._tail is not None:
            yield from out.finish(self._tail)

    def pictures(self, start_s: float, end_s: float) -> Iterator[tuple[float, av.VideoFrame]]:
        """``(t, picture)`` for ``t = start_s + k/fps < end_s``: the decoded pictures that
        ``frames`` converts to RGB, in the decoder's own format (for ``as_yuv420p``). One
        picture covering several output times is yielded each time, as the same object."""
        start, end = as_fraction(start_s), as_fraction(end_s)
        if start < self._after or end <= start:
            raise ValueError(f"ranges must be increasing: {start_s}..{end_s} after {self._after}")
        self._after = end
        emitted = 0
        for t, picture in self._timed(start, end):
            emitted += 1
            yield float(t), picture
        if self._count == 0:
            raise MediaError("no decodable video frames", self.path)
        if emitted == 0:
            raise MediaError(f"no video frames between {start_s}s and {end_s}s", self.path)

    def frames(self, start_s: float, end_s: float) -> Iterator[tuple[float, np.ndarray]]:
        """``(t, frame)`` for ``t = start_s + k/fps < end_s``, as ``iter_frames`` yields them."""
        yield from _to_rgb(self.pictures(start_s, end_s))


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray(format="rgb24")


def _to_rgb(
    items: Iterator[tuple[Fraction | float, av.VideoFrame]],
) -> Iterator[tuple[float, np.ndarray]]:
    """Convert to RGB on worker threads while the decoder keeps going.

    The YUV-to-RGB conversion is single-threaded in FFmpeg and costs about as much as
    decoding, so overlapping it with decoding is where the speed is.  At most
    ``RGB_DEPTH`` frames are in flight, so memory stays flat; a frame that covers
    several output times is converted once.
    """
    pending: deque[tuple[float, Future[np.ndarray]]] = deque()
    last: tuple[av.VideoFrame | None, Future[np.ndarray] | None] = (None, None)
    with ThreadPoolExecutor(RGB_WORKERS) as pool:
        for t, frame in items:
            if frame is not last[0]:
                last = (frame, pool.submit(_rgb, frame))
            pending.append((float(t), last[1]))
            if len(pending) > RGB_DEPTH:
                t0, future = pending.popleft()
                yield t0, future.result()
        while pending:
            t0, future = pending.popleft()
            yield t0, future.result()


def iter_frames(
    path: str | Path,
    fps: float | Fraction,
    start_s: float = 0.0,
    end_s: float | None = None,
    *,
    report: DecodeReport | None = None,
    frame_threads: bool = True,
) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(t, frame)`` for ``t = start_s + k/fps`` with ``t < end_s``.

    ``frame`` is an ``[H, W, 3]`` uint8 RGB array; the same array object is yielded again
    when one source frame covers several output times, so copy it before writing to it.
    Damaged packets are skipped and counted in ``report`` (pass one in to read it).
    Raises ``MediaError`` when nothing at all can be decoded.

    ``frame_threads=False`` decodes one frame at a time (slice threads only). Use it for
    files that may be damaged: a frame-threaded decoder reports a bad packet several packets
    late and, near the end of a stream, can drop good frames or lose the error, by amounts
    that depend on the core count; one frame at a time gives the same frames and the exact
    packet times on every machine.
    """
    report = report if report is not None else DecodeReport()
    rate, start = as_fraction(fps, 1001), as_fraction(start_s)
    end = None if end_s is None else as_fraction(end_s)
    if rate <= 0 or start < 0 or (end is not None and end <= start):
        raise ValueError(f"bad range: fps={fps}, start_s={start_s}, end_s={end_s}")
    emitted, decoded_before = 0, report.frames_decoded  # a report may be shared
    for item in _to_rgb(_timed_frames(path, rate, start, end, report, frame_threads)):
        emitted += 1
        yield item
    if report.frames_decoded == decoded_before:
        raise MediaError("no decodable video frames", path)
    if emitted == 0:
        raise MediaError(f"no video frames between {start_s}s and {end_s}s", path)


def decode_frames(
    path: str | Path,
    fps: float | Fraction,
    start_s: float = 0.0,
    end_s: float | None = None,
    *,
    report: DecodeReport | None = None,
) -> np.ndarray:
    """All frames of ``iter_frames`` stacked into one ``[N, H, W, 3]`` uint8 array."""
    return np.stack([frame for _, frame in iter_frames(path, fps, start_s, end_s, report=report)])
