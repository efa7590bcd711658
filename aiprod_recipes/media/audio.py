"""Decode a clip's audio to float32 PCM at a fixed rate and channel count.

The audio VAE wants a fixed sample rate and layout, and each audio sample must line up
with the video frames cut from the same range, so decoded chunks are placed by their
timestamps into a buffer of exactly ``round((end - start) * sample_rate)`` samples
(gaps and the tail stay silent).  Down-mixing (e.g. 5.1 to stereo or mono) is left to
FFmpeg's resampler, which applies the standard centre/surround mix levels.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import av.container
import numpy as np

from aiprod_recipes.media.probe import container_duration_s, open_input, time_origin
from aiprod_recipes.media.report import DecodeReport, decode_packets
from aiprod_recipes.names import MODEL_AUDIO_RATE

LAYOUTS = {1: "mono", 2: "stereo"}


def _clip_end_s(container: av.container.InputContainer, audio: av.AudioStream) -> float:
    """Default end of the range: the video's end when there is video, so A/V match."""
    stream = container.streams.video[0] if container.streams.video else audio
    return container_duration_s(container, stream)


def _seek(
    container: av.container.InputContainer, audio: av.AudioStream, start_s: float, origin: float
) -> bool:
    """Seek a little before ``start_s``; samples are placed by pts, so landing early is free.
    Returns whether it seeked."""
    target = start_s - 0.1
    if target > 0 and audio.time_base is not None:
        container.seek(int((target + origin) / audio.time_base), stream=audio, backward=True)
        return True
    return False


def _align_phase(frame: av.AudioFrame, sample_rate: int) -> av.AudioFrame:
    """Drop the first few samples so resampling starts on the same phase as from zero.

    After a seek, the first decoded frame may start on a source sample that is not a
    multiple of ``src_rate / gcd(src_rate, sample_rate)``; resampling from there would
    shift the whole output by a fraction of a sample versus decoding from the start.
    """
    src = frame.sample_rate
    step = src // math.gcd(src, sample_rate)
    if step == 1 or frame.pts is None or frame.time_base is None:
        return frame
    pos = Fraction(frame.pts) * frame.time_base * src
    skip = (-pos.numerator // pos.denominator) % step if pos.denominator == 1 else 0
    if skip == 0 or skip >= frame.samples:
        return frame
    data = frame.to_ndarray()
    width = 1 if frame.format.is_planar else len(frame.layout.channels)
    trimmed = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(data[:, skip * width :]),
        format=frame.format.name,
        layout=frame.layout.name,
    )
    trimmed.sample_rate, trimmed.time_base = src, frame.time_base
    trimmed.pts = frame.pts + round(Fraction(skip, src) / frame.time_base)
    return trimmed


class _Placer:
    """Writes resampled chunks into the output buffer at their timestamp positions."""

    def __init__(
        self, channels: int, sample_rate: int, start_s: float, origin_s: float, length: int
    ) -> None:
        self.out = np.zeros((channels, length), dtype=np.float32)
        self.sample_rate = sample_rate
        self.origin = round((start_s + origin_s) * sample_rate)
        self.cursor: int | None = None

    def full(self) -> bool:
        return self.cursor is not None and self.cursor - self.origin >= self.out.shape[1]

    def place(self, frame: av.AudioFrame) -> None:
        data = frame.to_ndarray().reshape(self.out.shape[0], -1)
        if frame.pts is not None and frame.time_base is not None:
            pos = round(Fraction(frame.pts) * frame.time_base * self.sample_rate)
        else:
            pos = self.cursor if self.cursor is not None else self.origin
        i0 = pos - self.origin
        lo, hi = max(i0, 0), min(i0 + data.shape[1], self.out.shape[1])
        if hi > lo:
            self.out[:, lo:hi] = data[:, lo - i0 : hi - i0]
        self.cursor = pos + data.shape[1]


def decode_audio(
    path: str | Path,
    sample_rate: int = MODEL_AUDIO_RATE,
    channels: int = 1,
    start_s: float = 0.0,
    end_s: float | None = None,
    *,
    report: DecodeReport | None = None,
) -> np.ndarray | None:
    """Float32 PCM ``[channels, round((end_s - start_s) * sample_rate)]``, or None.

    ``end_s=None`` means the end of the video (of the audio for audio-only files).  A
    clip without an audio stream returns None: silent clips are valid training data.
    Damaged packets are skipped and counted in ``report``.
    """
    if channels not in LAYOUTS:
        raise ValueError(f"channels must be 1 or 2, got {channels}")
    report = report if report is not None else DecodeReport()
    with open_input(path) as container:
        if not container.streams.audio:
            return None
        audio = container.streams.audio[0]
        end = _clip_end_s(container, audio) if end_s is None else end_s
        if end <= start_s:
            raise ValueError(f"bad range: start_s={start_s}, end_s={end}")
        clock = time_origin(container)
        origin = float(clock)
        length = round((end - start_s) * sample_rate)
        placer = _Placer(channels, sample_rate, start_s, origin, length)
        resampler = av.AudioResampler(format="fltp", layout=LAYOUTS[channels], rate=sample_rate)
        seeked = _seek(container, audio, start_s, origin)
        packets = decode_packets(container, audio, report, clock, after_seek=seeked)
        for i, frame in enumerate(packets):
            if i == 0 and start_s > 0:
                frame = _align_phase(frame, sample_rate)
            for chunk in resampler.resample(frame):
                placer.place(chunk)
            if placer.full():
                break
        else:
            for chunk in resampler.resample(None):
                placer.place(chunk)
    return placer.out
