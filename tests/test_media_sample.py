"""The sample dataset: deterministic bytes, small files, captions, and a real cut."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aiprod_recipes.media.audio import decode_audio
from aiprod_recipes.media.probe import probe
from aiprod_recipes.media.sample import CLIPS, generate
from tests.media_fixtures import SAMPLE_DIR


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    a, b = tmp_path_factory.mktemp("sample_a"), tmp_path_factory.mktemp("sample_b")
    generate(a)
    generate(b)
    return a, b


def test_same_code_same_bytes(generated: tuple[Path, Path]) -> None:
    a, b = generated
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert len(names) == 2 * len(CLIPS) == 12
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_committed_sample_is_up_to_date(generated: tuple[Path, Path]) -> None:
    if not SAMPLE_DIR.is_dir():
        pytest.skip("data/sample not generated")
    for path in generated[0].iterdir():
        assert (SAMPLE_DIR / path.name).read_bytes() == path.read_bytes(), path.name


def test_sizes_and_contents(generated: tuple[Path, Path]) -> None:
    out = generated[0]
    assert sum(p.stat().st_size for p in out.iterdir()) < 1_000_000
    for clip in CLIPS:
        mp4 = out / f"{clip.name}.mp4"
        assert mp4.stat().st_size < 150_000
        caption = (out / f"{clip.name}.txt").read_text(encoding="utf-8").strip()
        assert len(caption.split()) >= 12
        info = probe(mp4)
        assert (info.width, info.height, info.fps) == (256, 192, 24.0)
        assert 2.0 <= info.duration_s <= 3.0 and info.has_audio
        pcm = decode_audio(mp4, 16000, 1)
        assert pcm is not None and np.sqrt(np.mean(pcm**2)) > 0.01


def test_clips_differ(generated: tuple[Path, Path]) -> None:
    sizes = {(generated[0] / f"{c.name}.mp4").stat().st_size for c in CLIPS}
    assert len(sizes) == len(CLIPS)
