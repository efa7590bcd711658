"""Decoded pictures straight to x264 (as_yuv420p): exact planes, clean frames, the source's
YUV matrix carried to readers, and the ingest settings' bytes stable from call to call."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from aiprod_recipes.media.encode import PRESETS, as_yuv420p, encode_mp4
from aiprod_recipes.media.video import decode_frames
from aiprod_recipes.spec import Ingest
from aiprod_recipes.stages.ingest import CLIP_AAC_CODER
from tests.media_fixtures import pattern_frames, tone

BT709, UNSPECIFIED = 1, 2


def _picture(rgb: np.ndarray, fmt: str = "yuv420p", matrix: int = UNSPECIFIED,
             full_range: bool = False) -> av.VideoFrame:
    """A picture as a decoder hands it over: converted from ``rgb`` with ``matrix``."""
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    dst = "ITU709" if matrix == BT709 else "ITU601"
    picture = frame.reformat(format=fmt, dst_colorspace=dst,
                             dst_color_range="JPEG" if full_range else "MPEG")
    picture.colorspace = matrix
    return picture


def _planes(frame: av.VideoFrame) -> list[np.ndarray]:
    return [np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[: p.height, : p.width]
            for p in frame.planes]


def test_yuv420p_planes_are_copied_exactly_and_odd_edges_dropped() -> None:
    source = _picture(pattern_frames(1, width=65, height=47)[0], matrix=BT709)
    source.pict_type = av.video.frame.PictureType.I
    out = as_yuv420p(source)
    assert (out.width, out.height, out.format.name) == (64, 46, "yuv420p")
    assert out is not source and out.colorspace == BT709
    assert out.pict_type == av.video.frame.PictureType.NONE  # x264 would force a keyframe
    for got, full, (rows, cols) in zip(_planes(out), _planes(source),
                                       [(46, 64), (23, 32), (23, 32)], strict=True):
        assert np.array_equal(got, full[:rows, :cols])


@pytest.mark.parametrize(("fmt", "full_range"), [("yuvj420p", True), ("yuv420p", True),
                                                  ("yuv422p", False), ("yuv420p10le", False)])
def test_other_formats_are_converted_once_to_limited_range(fmt: str, full_range: bool) -> None:
    rgb = pattern_frames(1)[0]
    source = _picture(rgb, fmt, BT709, full_range)
    out = as_yuv420p(source)
    assert out.format.name == "yuv420p" and out.colorspace == BT709
    assert out.color_range in (0, 1)  # limited (MPEG) or unspecified, which means limited
    seen = out.to_ndarray(format="rgb24").astype(int)
    assert np.abs(seen - source.to_ndarray(format="rgb24").astype(int)).mean() < 3


def test_rgb_sources_get_no_matrix() -> None:
    rgb = pattern_frames(1)[0]
    out = as_yuv420p(av.VideoFrame.from_ndarray(rgb, format="rgb24"))
    assert out.colorspace == UNSPECIFIED
    assert np.abs(out.to_ndarray(format="rgb24").astype(int) - rgb.astype(int)).mean() < 3


@pytest.mark.parametrize("matrix", [BT709, UNSPECIFIED])
def test_readers_see_the_sources_rgb(tmp_path: Path, matrix: int) -> None:
    """Losslessly encoded (crf 0), a clip made of pictures decodes to exactly the RGB the
    source decodes to: the matrix travels in the clip's header."""
    sources = [_picture(f, matrix=matrix) for f in pattern_frames(6)]
    expected = np.stack([s.to_ndarray(format="rgb24") for s in sources])
    encode_mp4(tmp_path / "c.mp4", [as_yuv420p(s) for s in sources], 24, crf=0,
               preset=Ingest().preset)
    assert np.array_equal(decode_frames(tmp_path / "c.mp4", 24), expected)
    if matrix == BT709:  # and without the tag the same YUV would read differently
        sources[0].colorspace = UNSPECIFIED
        assert not np.array_equal(sources[0].to_ndarray(format="rgb24"), expected[0])


def test_pictures_and_arrays_do_not_mix_and_presets_are_checked() -> None:
    picture = as_yuv420p(_picture(pattern_frames(1)[0]))
    with pytest.raises(ValueError, match="does not match"):
        encode_mp4(io.BytesIO(), [picture, pattern_frames(1)[0]], 24)
    with pytest.raises(ValueError, match="yuv420p"):
        encode_mp4(io.BytesIO(), [av.VideoFrame(64, 48, "yuv444p")], 24)
    with pytest.raises(ValueError, match="unknown x264 preset"):
        encode_mp4(io.BytesIO(), [picture], 24, preset="ludicrous")
    with pytest.raises(ValueError, match="unknown AAC coder"):
        encode_mp4(io.BytesIO(), [picture], 24, tone(0.1), aac_coder="best")
    assert Ingest().preset in PRESETS


def _block_pictures(seed: int, width: int) -> list[av.VideoFrame]:
    """Nine pictures, 64 high, of random 8x8 blocks (the frames that showed x264's
    leftovers); at a width of 104 the picture's rows are padded in memory."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (9, 8, width // 8, 3), dtype=np.uint8)
    return [_picture(f) for f in np.repeat(np.repeat(blocks, 8, axis=1), 8, axis=2)]


@pytest.mark.parametrize(("seed", "width"), [(0, 96), (2, 96), (4, 96), (1, 104)])
def test_ingest_settings_give_the_same_bytes_whatever_ran_before(seed: int, width: int) -> None:
    """The ingest encoding (pictures, the default preset, the fast AAC coder) encoded again
    after other work, torch included, gives the same bytes (see test_media_encode for the
    x264 kernels that once let leftover memory into small clips)."""
    sources = _block_pictures(seed, width)
    assert width == 96 or as_yuv420p(sources[0]).planes[0].line_size > width
    rng = np.random.default_rng(seed)
    sound = (tone(0.375, 48_000, 2) + rng.normal(0, 0.01, (2, 18_000))).astype(np.float32)
    outputs, held = set(), []
    for k in range(6):
        held.append(bytearray(1000 + 37_000 * k))
        x = torch.randn(64 + 16 * k, 64)
        (x @ x.T).sum()
        for s in sources:
            s.pts, s.time_base = k, Fraction(1, 24)  # leftovers a previous encode would set
        buf = io.BytesIO()
        encode_mp4(buf, [as_yuv420p(s) for s in sources], 24, sound, 48_000,
                   preset=Ingest().preset, aac_coder=CLIP_AAC_CODER)
        outputs.add(buf.getvalue())
    assert len(outputs) == 1, f"{len(outputs)} different encodings"
