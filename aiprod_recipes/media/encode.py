"""Write frames (and optional audio) as a deterministic H.264 + AAC mp4.

Normalized clips are DVC outputs: if re-encoding the same frames gave different bytes,
every downstream stage would rerun for nothing.  So every knob that can vary between
runs or machines is pinned: a fixed x264 thread count (x264's output depends on it), no
macroblock-tree rate control (its AVX-512 kernels let leftover memory into small clips),
the muxer's bitexact mode (no library version or creation time in the header), fixed
encoder options, and exact rational timestamps.

Frames come either as RGB arrays (drawn or generated pictures) or as decoded pictures
already in the encoder's own format (``as_yuv420p``): re-encoding decoded footage through
RGB would convert every frame twice (YUV to RGB and back), which costs more than a fast
x264 preset and rounds the pixels twice on the way.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, get_args

import av
import av.container
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from aiprod_recipes.media.errors import MediaError
from aiprod_recipes.names import MODEL_AUDIO_RATE
from aiprod_recipes.spec import X264Preset

AUDIO_CHUNK = 1024  # samples per AAC frame
LAYOUTS = {1: "mono", 2: "stereo"}
PRESETS = get_args(X264Preset)
"""x264's speed presets, fastest first: the same CRF gives about the same quality at each,
in more bytes the faster the preset."""
AAC_CODERS = ("twoloop", "fast")
"""FFmpeg AAC coders: ``twoloop`` (the default here) searches quantisers twice; ``fast``, FFmpeg's
default for years because at higher bitrates such as 128 kbit/s it sounds no worse, costs a
third to a fifth of it on recorded sound (pure digital tones are the exception)."""
YUV420P = "yuv420p"
UNSPECIFIED_MATRIX = 2  # AVCOL_SPC_UNSPECIFIED: players and swscale read BT.601
KNOWN_MATRICES = frozenset({1, 4, 5, 6, 7, 9})
"""YUV matrices (AVColorSpace) that swscale converts and H.264 signals: BT.709, FCC,
BT.470BG, SMPTE 170M, SMPTE 240M, BT.2020 (non-constant luminance)."""


def even_crop(frame: np.ndarray) -> np.ndarray:
    """``frame`` without its last row and/or column when its height or width is odd.

    yuv420p, the pixel format every player reads, needs even sizes. Dropping one edge line
    keeps every other pixel exactly as decoded, where scaling to an even size would
    resample the whole picture (and blur it) to move the aspect ratio by the same sliver.
    The result is a view (no copy); the encoder reads strided frames as they are.
    """
    h, w = frame.shape[:2]
    return frame if not (h % 2 or w % 2) else frame[: h - h % 2, : w - w % 2]


def _plane(frame: av.VideoFrame, index: int, rows: int, cols: int) -> np.ndarray:
    """The top-left ``rows x cols`` of one plane, in place (planes may be row-padded)."""
    plane = frame.planes[index]
    data = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
    return data[:rows, :cols]


def as_yuv420p(frame: av.VideoFrame) -> av.VideoFrame:
    """A decoded picture as ``encode_mp4`` takes it: a new, limited-range yuv420p frame of
    even size that carries only its YUV matrix.

    Most footage decodes to limited-range yuv420p already; its planes are copied as they
    are (an odd last row or column dropped, as ``even_crop`` does for RGB). Anything else
    (full range, 4:2:2, 10 bit, RGB sources) is converted once by swscale, keeping the
    source's matrix. The copy leaves behind what the decoder attached to the frame
    (picture type, side data such as captions), which x264 would otherwise follow or embed.
    The matrix travels to the clip's header, so readers convert the clip to RGB as they
    would have converted the source.
    """
    fmt = frame.format
    rgb = fmt.is_rgb or fmt.has_palette or fmt.is_bayer
    matrix = frame.colorspace
    if rgb or matrix not in KNOWN_MATRICES:
        matrix = UNSPECIFIED_MATRIX
    if fmt.name != YUV420P or frame.color_range == ColorRange.JPEG:
        frame = frame.reformat(
            format=YUV420P, dst_color_range=ColorRange.MPEG,
            dst_colorspace=Colorspace.ITU601 if matrix == UNSPECIFIED_MATRIX else None)
    h, w = frame.height - frame.height % 2, frame.width - frame.width % 2
    if h == 0 or w == 0:
        raise MediaError(f"frame size {frame.width}x{frame.height} is too small")
    out = av.VideoFrame(w, h, YUV420P)
    for index, (rows, cols) in enumerate([(h, w), (h // 2, w // 2), (h // 2, w // 2)]):
        _plane(out, index, rows, cols)[...] = _plane(frame, index, rows, cols)
    out.colorspace = matrix
    return out


Frame = np.ndarray | av.VideoFrame
"""An ``[H, W, 3]`` uint8 RGB array, or a yuv420p picture from ``as_yuv420p``."""


def _shape(frame: Frame) -> tuple[int, ...]:
    """What must stay the same from frame to frame: the stream is opened for one size."""
    if isinstance(frame, av.VideoFrame):
        return (frame.height, frame.width, frame.format.name, frame.colorspace)
    return (*frame.shape, frame.dtype.name)


def _check_frame(frame: Frame, shape: tuple[int, ...]) -> None:
    """Every frame must match the first: the stream's size is fixed at open time."""
    if _shape(frame) != shape:
        raise ValueError(f"frame {_shape(frame)} does not match the first frame's {shape}")


def _first_frame(frames: Iterable[Frame]) -> tuple[Frame, Iterator[Frame]]:
    """Peek at the first frame (it fixes the size) without losing it from the stream."""
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise ValueError("no frames to encode")
    if isinstance(first, av.VideoFrame):
        if first.format.name != YUV420P:
            raise ValueError(f"pictures must be {YUV420P} (see as_yuv420p), "
                             f"got {first.format.name}")
        h, w = first.height, first.width
    else:
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
    first: Frame,
    rate: Fraction,
    crf: int,
    preset: str,
    threads: int,
) -> av.VideoStream:
    if preset not in PRESETS:
        raise ValueError(f"unknown x264 preset {preset!r}; use one of {', '.join(PRESETS)}")
    stream = container.add_stream("libx264", rate=rate)
    if isinstance(first, av.VideoFrame):
        stream.height, stream.width = first.height, first.width
        if first.colorspace != UNSPECIFIED_MATRIX:
            stream.codec_context.colorspace = first.colorspace
    else:
        stream.height, stream.width = first.shape[:2]
    stream.pix_fmt = YUV420P
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
    container: av.container.OutputContainer, channels: int, sample_rate: int, bitrate: int,
    coder: str,
) -> av.AudioStream:
    if coder not in AAC_CODERS:
        raise ValueError(f"unknown AAC coder {coder!r}; use one of {', '.join(AAC_CODERS)}")
    stream = container.add_stream("aac", rate=sample_rate)
    stream.layout = LAYOUTS[channels]
    stream.bit_rate = bitrate
    stream.options = {"flags": "+bitexact", "aac_coder": coder}
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
    frames: Iterable[Frame],
    fps: float | Fraction,
    audio: np.ndarray | None = None,
    sample_rate: int = MODEL_AUDIO_RATE,
    crf: int = 18,
    *,
    preset: str = "medium",
    audio_bitrate: int = 128_000,
    aac_coder: str = "twoloop",
    threads: int = 4,
) -> None:
    """Encode ``[H, W, 3]`` uint8 RGB frames or ``as_yuv420p`` pictures (one kind per clip)
    and ``[C, T]`` float32 audio to mp4.

    Same inputs, same bytes.  Frame sizes must be even (yuv420p); an odd size raises
    ``MediaError`` (``even_crop`` and ``as_yuv420p`` make any frame fit).  ``frames`` may
    be any iterable, so long clips stream through; pictures get their timestamps set here.
    """
    rate = Fraction(fps).limit_denominator(1001)
    first, stream_of_frames = _first_frame(frames)
    pcm = None if audio is None else _check_audio(audio)
    target = str(dest) if isinstance(dest, str | Path) else dest
    with av.open(target, mode="w", format="mp4", options={"fflags": "+bitexact"}) as container:
        video = _add_video(container, first, rate, crf, preset, threads)
        feeder = None
        if pcm is not None:
            stream = _add_audio(container, pcm.shape[0], sample_rate, audio_bitrate, aac_coder)
            feeder = _AudioFeeder(stream, pcm, sample_rate)
        shape = _shape(first)
        for i, item in enumerate(stream_of_frames):
            _check_frame(item, shape)
            frame = (item if isinstance(item, av.VideoFrame)
                     else av.VideoFrame.from_ndarray(item, format="rgb24"))
            frame.pts, frame.time_base = i, 1 / rate
            container.mux(video.encode(frame))
            if feeder is not None:
                container.mux(list(feeder.packets_until((i + 1) / rate)))
        container.mux(video.encode(None))
        if feeder is not None:
            container.mux(list(feeder.flush()))
