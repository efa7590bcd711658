"""Ingest throughput: the ingest stage against a plain PyAV decode-to-RGB loop, same clips.

One run generates N short clips (default 100: H.264 + stereo AAC in mp4, like phone footage,
every fourth one with a hard cut) into a temporary folder, and measures on those clips:

- plain:  PyAV decodes every video frame and converts it to RGB, nothing else;
- decode: ingest's own reading (``iter_frames`` one frame at a time, as ingest reads raw
  clips, plus the audio track);
- stage:  the ingest stage as ``aiprod-recipes run ingest`` runs it (``run_stage`` in a
  scratch project, imports done beforehand): hashing, scene detection, decoding, H.264 +
  AAC encoding of every scene, shards, manifest and quarantine report.

It prints frames per second of each and its ratio to plain (goal for the stage: >= 0.8),
in wall time and in CPU time (all threads; the CPU ratio holds however busy the machine is
and however many cores the stage spreads its sources over), then where the stage's time
goes, part by part, on the first clips. The clips and the scratch project are deleted at
the end.

What the figures say: ingest re-encodes every scene (x264 at the medium preset, AAC), and
encoding costs several times what decoding does, so on one core the stage cannot come near
a decode-only loop; it gains back wall time by cutting several sources at once (one per
core, up to 8). The breakdown prints, for reference, what x264's veryfast preset would
cost; it would change every clip's bytes, so it is a decision, not an optimisation.

Run: ``python bench/bench_ingest.py [--clips N] [--size WxH] [--seconds S] [--parts K]``
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aiprod_recipes.media import synth  # noqa: E402
from aiprod_recipes.media.audio import decode_audio  # noqa: E402
from aiprod_recipes.media.encode import encode_mp4  # noqa: E402
from aiprod_recipes.media.probe import probe  # noqa: E402
from aiprod_recipes.media.scenes import detect_scenes  # noqa: E402
from aiprod_recipes.media.video import iter_frames  # noqa: E402

FPS = 24
SAMPLE_RATE = 48_000


# --------------------------------------------------------------------------- clips

def _scene(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, list]:
    """A grainy gradient background and a few moving discs (x, y, vx, vy, radius, colour)."""
    top, bottom = (tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(2))
    canvas = synth.vertical_gradient(width, height, top, bottom)
    canvas += rng.normal(0, 8, (height, width, 1)).astype(np.float32)  # sensor-like grain
    discs = [(rng.uniform(0, width), rng.uniform(0, height), rng.uniform(-6, 6),
              rng.uniform(-4, 4), rng.uniform(height / 16, height / 6),
              np.asarray(rng.integers(0, 256, 3), np.uint8)) for _ in range(3)]
    return synth.to_uint8(canvas), discs


def _frames(seed: int, n: int, width: int, height: int, cut: bool) -> Iterator[np.ndarray]:
    """A slow pan over the background with the discs moving across it (uint8 throughout:
    making the inputs should not take longer than measuring them)."""
    rng = np.random.default_rng(seed)
    scenes = [_scene(rng, width, height) for _ in range(2 if cut else 1)]
    ys, xs = np.ogrid[:height, :width]
    for k in range(n):
        background, discs = scenes[1 if cut and k >= n // 2 else 0]
        frame = np.roll(background, 2 * k, axis=1)
        for x, y, vx, vy, r, colour in discs:
            cx, cy = (x + vx * k) % width, (y + vy * k) % height
            x0, x1 = max(int(cx - r), 0), min(int(cx + r) + 1, width)
            y0, y1 = max(int(cy - r), 0), min(int(cy + r) + 1, height)
            inside = (xs[:, x0:x1] - cx) ** 2 + (ys[y0:y1] - cy) ** 2 <= r * r
            frame[y0:y1, x0:x1][inside] = colour
        yield frame


def _sound(seed: int, seconds: float) -> np.ndarray:
    t = synth.times(seconds, SAMPLE_RATE)
    left = synth.tone(t, 220.0 + 7 * (seed % 50), 0.3)
    right = synth.tone(t, 330.0 + 5 * (seed % 40), 0.2)
    return np.stack([left, right]).astype(np.float32)


def make_clips(folder: Path, count: int, width: int, height: int, seconds: float) -> list[Path]:
    """``count`` distinct clips; encoded fast (these are the inputs, not what is measured)."""
    n = round(seconds * FPS)
    paths = []
    for i in range(count):
        path = folder / f"clip_{i:04d}.mp4"
        encode_mp4(path, _frames(i, n, width, height, cut=i % 4 == 3), FPS,
                   _sound(i, n / FPS), SAMPLE_RATE, crf=20, preset="veryfast")
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- measures

def plain(path: Path) -> int:
    """The baseline: decode every frame and convert it to RGB, nothing else."""
    n = 0
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frame.to_ndarray(format="rgb24")
            n += 1
    return n


def ingest_decode(path: Path) -> int:
    """Ingest's reading of a raw clip: frames at its rate, one at a time, and the sound."""
    n = sum(1 for _ in iter_frames(path, FPS, frame_threads=False))
    decode_audio(path, SAMPLE_RATE, 2)
    return n


Timing = tuple[float, float]
"""(wall seconds, CPU seconds of the whole process, all threads)."""


def _timed(fn: Callable[[], object]) -> Timing:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _each(fn: Callable[[Path], object], paths: list[Path]) -> Timing:
    return _timed(lambda: [fn(p) for p in paths])


def run_stage_in(project: Path, raw: Path) -> Timing:
    """One ingest stage run over ``raw`` in a fresh scratch project."""
    import tomlkit
    import tomllib

    from aiprod_recipes.runtime import run_stage

    doc = tomllib.loads((REPO / "recipes" / "tiny.toml").read_text())
    doc["data"]["raw_dir"] = str(raw)
    project.mkdir()
    (project / "params.toml").write_text(tomlkit.dumps(doc))
    cwd = os.getcwd()
    os.chdir(project)
    try:
        return _timed(lambda: run_stage("ingest"))
    finally:
        os.chdir(cwd)


def parts(paths: list[Path]) -> dict[str, float]:
    """Seconds of each part of the stage's work, run one after another on ``paths``."""
    from aiprod_recipes.specio import load_spec

    cfg = load_spec(REPO / "recipes" / "tiny.toml").ingest
    out = dict.fromkeys(("probe", "scene detection", "video decode + RGB", "audio decode",
                         "H.264 encode", "AAC encode", "(H.264 veryfast)"), 0.0)
    for path in paths:
        t0 = time.perf_counter()
        probe(path)
        t1 = time.perf_counter()
        detect_scenes(path, "content", {"threshold": cfg.detector.threshold},
                      cfg.min_scene_frames)
        t2 = time.perf_counter()
        frames = [f.copy() for _, f in iter_frames(path, cfg.fps, frame_threads=False)]
        t3 = time.perf_counter()
        sound = decode_audio(path, SAMPLE_RATE, 2)
        t4 = time.perf_counter()
        encode_mp4(io.BytesIO(), frames, cfg.fps, None, SAMPLE_RATE, cfg.crf)
        t5 = time.perf_counter()
        encode_mp4(io.BytesIO(), frames[:1], cfg.fps, sound, SAMPLE_RATE, cfg.crf)
        t6 = time.perf_counter()
        encode_mp4(io.BytesIO(), frames, cfg.fps, None, SAMPLE_RATE, cfg.crf, preset="veryfast")
        t7 = time.perf_counter()
        for key, dt in zip(out, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t7 - t6),
                           strict=True):
            out[key] += dt
    return out


# --------------------------------------------------------------------------- report

def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=100, help="clips to generate (default 100)")
    ap.add_argument("--size", default="480x270", help="frame size WxH (default 480x270)")
    ap.add_argument("--seconds", type=float, default=2.0, help="clip length (default 2 s)")
    ap.add_argument("--parts", type=int, default=20,
                    help="clips for the part-by-part breakdown (0: none; default 20)")
    args = ap.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    import aiprod_recipes.stages.ingest  # noqa: F401  (imports are not the stage's work)

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        raw = Path(tmp) / "raw"
        raw.mkdir()
        t0 = time.perf_counter()
        paths = make_clips(raw, args.clips, width, height, args.seconds)
        print(f"{len(paths)} clips of {width}x{height}, {args.seconds:g} s at {FPS} fps, "
              f"H.264 + AAC (made in {time.perf_counter() - t0:.0f} s); {cores} core(s)")
        frames = sum(plain(p) for p in paths)  # also warms the file cache and the codecs
        base = _each(plain, paths)
        stage = run_stage_in(Path(tmp) / "project", raw)
        base = min(base, _each(plain, paths))  # best of two, around the stage run
        ours = _each(ingest_decode, paths)

        print(f"\n{'':<32} {'wall s':>7} {'frames/s':>9} {'vs plain':>9} {'CPU s':>7} "
              f"{'CPU vs plain':>13}")
        for name, (wall, cpu) in (("plain PyAV decode to RGB", base),
                                  ("ingest decode (video + audio)", ours),
                                  ("ingest stage (goal >= 0.8)", stage)):
            print(f"{name:<32} {wall:>7.2f} {frames / wall:>9.1f} {base[0] / wall:>9.2f} "
                  f"{cpu:>7.2f} {base[1] / cpu:>13.2f}")
        print("(CPU: seconds of all the process's threads; its ratio does not depend on how "
              "busy the machine is, or on how many cores the stage spreads over)")

        if args.parts:
            split = parts(paths[: args.parts])
            reference = split.pop("(H.264 veryfast)")
            total = sum(split.values())
            print(f"\nwhere the stage's time goes ({min(args.parts, len(paths))} clips, "
                  "parts run one after another)")
            for name, dt in split.items():
                print(f"  {name:<22} {dt:>7.2f} s {100 * dt / total:>5.1f} %")
            print(f"  for reference, H.264 at x264's veryfast preset: {reference:.2f} s "
                  "(different bytes: not what ingest does)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
