"""Ingest throughput: the ingest stage against a plain PyAV decode-to-RGB loop, same clips.

One run generates N short clips (default 100: H.264 + stereo AAC in mp4, like phone footage,
every fourth one with a hard cut) into a temporary folder, and measures on those clips:

- plain:  PyAV decodes every video frame and converts it to RGB, nothing else;
- decode: ingest's own reading (``SceneFrames`` one frame at a time, as ingest reads raw
  clips, pictures made ready for x264, plus the audio track);
- stage:  the ingest stage as ``aiprod-recipes run ingest`` runs it (``run_stage`` in a
  scratch project, imports done beforehand): hashing, scene detection, decoding, H.264 +
  AAC encoding of every scene, shards, manifest and quarantine report.

It prints frames per second of each and its ratio to plain (goal for the stage: >= 0.8),
in wall time and in CPU time (all threads; the CPU ratio holds however busy the machine is
and however many cores the stage spreads its sources over). Then, on the first clips
(``--parts``): where the stage's CPU time goes, part by part; what each x264 preset costs at
the spec's crf (CPU per frame, bytes per frame, PSNR of the clip as the latents stage decodes
it against the source as decoded to RGB), next to the encoding ingest did before it fed x264
the decoded YUV pictures (medium, through RGB); and what each way of storing the sound costs.
The clips and the scratch project are deleted at the end.

What the figures say: ingest re-encodes every scene, and even x264's fastest preset costs
about as much per frame as decoding does, on top of a second decode for scene detection (and
the sound's encoding), so in CPU time the stage cannot come near a decode-only loop (about
0.2 of it at the default preset); it gains back wall time by cutting several sources at once
(one per core, up to 8), so its wall ratio is at most the CPU ratio times the cores it keeps
busy: the 0.8 goal needs five or more.

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
from aiprod_recipes.media.clips import decode_clip  # noqa: E402
from aiprod_recipes.media.encode import (  # noqa: E402
    AAC_CODERS,
    PRESETS,
    as_yuv420p,
    encode_mp4,
    even_crop,
)
from aiprod_recipes.media.probe import probe  # noqa: E402
from aiprod_recipes.media.video import SceneFrames, decode_frames  # noqa: E402
from aiprod_recipes.spec import Ingest  # noqa: E402
from aiprod_recipes.stages.ingest import (  # noqa: E402
    CLIP_AAC_CODER,
    CLIP_AUDIO_CHANNELS,
    CLIP_AUDIO_RATE,
    scenes_of,
)

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
    """Two tones over a microphone's noise floor (-50 dBFS): no recording is free of it, and
    pure digital tones are the one input on which AAC's fast coder is not the faster."""
    t = synth.times(seconds, SAMPLE_RATE)
    left = synth.tone(t, 220.0 + 7 * (seed % 50), 0.3)
    right = synth.tone(t, 330.0 + 5 * (seed % 40), 0.2)
    floor = np.random.default_rng(seed).normal(0.0, 0.003, (2, t.shape[0]))
    return (np.stack([left, right]) + floor).astype(np.float32)


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
    """Ingest's reading of a raw clip: pictures at its rate, one frame at a time, made ready
    for x264 (``as_yuv420p``), and the sound."""
    seconds = probe(path).duration_s
    with SceneFrames(path, FPS, frame_threads=False) as video:
        n = sum(1 for _, p in video.pictures(0.0, seconds) if as_yuv420p(p))
    decode_audio(path, CLIP_AUDIO_RATE, CLIP_AUDIO_CHANNELS)
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
    """One ingest stage run over ``raw``, a folder inside the scratch ``project`` (the spec
    takes input paths inside the project only)."""
    from aiprod_recipes.runtime import run_stage
    from tests.conftest import write_spec

    write_spec(project, data={"raw_dir": raw.relative_to(project).as_posix()})
    cwd = os.getcwd()
    os.chdir(project)
    try:
        return _timed(lambda: run_stage("ingest"))
    finally:
        os.chdir(cwd)


def _scene_pictures(path: Path, fps: float, seconds: float | None = None) -> list:
    """A whole clip as ingest hands it to x264: decoded pictures at ``fps``, as yuv420p."""
    seconds = probe(path).duration_s if seconds is None else seconds
    with SceneFrames(path, fps, frame_threads=False) as video:
        return [as_yuv420p(p) for _, p in video.pictures(0.0, seconds)]


def parts(paths: list[Path], cfg: Ingest) -> dict[str, float]:
    """CPU seconds of each part of the stage's work, run one after another on ``paths``."""
    out = dict.fromkeys(("probe", "scene detection", "video decode", "audio decode",
                         f"H.264 encode ({cfg.preset})", "AAC encode"), 0.0)
    for path in paths:
        marks = [time.process_time()]
        seconds = probe(path).duration_s
        marks.append(time.process_time())
        scenes_of(path, cfg, seconds)  # as ingest runs it: the spec's detector, one probe
        marks.append(time.process_time())
        pictures = _scene_pictures(path, cfg.fps, seconds)
        marks.append(time.process_time())
        sound = decode_audio(path, CLIP_AUDIO_RATE, CLIP_AUDIO_CHANNELS)
        marks.append(time.process_time())
        encode_mp4(io.BytesIO(), pictures, cfg.fps, None, crf=cfg.crf, preset=cfg.preset)
        marks.append(time.process_time())
        encode_mp4(io.BytesIO(), pictures[:1], cfg.fps, sound, CLIP_AUDIO_RATE, cfg.crf,
                   preset=cfg.preset, aac_coder=CLIP_AAC_CODER)
        marks.append(time.process_time())
        for key, a, b in zip(out, marks[:-1], marks[1:], strict=True):
            out[key] += b - a
    return out


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return 10 * np.log10(255**2 / max(mse, 1e-10))


def presets(paths: list[Path], cfg: Ingest) -> list[tuple[str, float, float, float]]:
    """(label, CPU ms per frame, KiB per frame, mean PSNR dB) for each x264 preset at the
    spec's crf, and for the way ingest encoded before (medium, RGB frames)."""
    clips = [(_scene_pictures(p, cfg.fps), decode_frames(p, cfg.fps)) for p in paths]
    frames = sum(len(rgb) for _, rgb in clips)
    rows = []
    for label, preset, via_rgb in [("medium, through RGB (before)", "medium", True),
                                   *((name, name, False) for name in PRESETS[:6])]:
        cpu, size, quality = 0.0, 0, []
        for pictures, rgb in clips:
            source = [even_crop(f) for f in rgb]
            buf = io.BytesIO()
            t = time.process_time()
            encode_mp4(buf, source if via_rgb else pictures, cfg.fps, crf=cfg.crf, preset=preset)
            cpu += time.process_time() - t
            size += len(buf.getvalue())
            quality.append(_psnr(decode_clip(buf.getvalue(), cfg.fps, None)[0], np.stack(source)))
        rows.append((label, 1000 * cpu / frames, size / frames / 1024, float(np.mean(quality))))
    return rows


def _lossless(pcm: np.ndarray, codec: str) -> bytes:
    """The sound alone, in mp4, with a lossless codec (for reference: ingest stores AAC)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(codec, rate=CLIP_AUDIO_RATE)
        stream.layout = "stereo"
        samples = (np.clip(pcm, -1, 1) * 32767).round().astype(np.int16)
        for k in range(0, samples.shape[1], 4096):
            chunk = np.ascontiguousarray(samples[:, k : k + 4096].T.reshape(1, -1))
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
            frame.sample_rate, frame.pts = CLIP_AUDIO_RATE, k
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buf.getvalue()


def sound(paths: list[Path]) -> list[tuple[str, float, float]]:
    """(label, CPU seconds per second of sound, KiB per second) of each way to store it."""
    pcm = [a for a in (decode_audio(p, CLIP_AUDIO_RATE, CLIP_AUDIO_CHANNELS) for p in paths)
           if a is not None]
    seconds = sum(a.shape[1] for a in pcm) / CLIP_AUDIO_RATE
    first = [np.zeros((16, 16, 3), np.uint8)]

    def aac(a: np.ndarray, coder: str) -> bytes:
        buf = io.BytesIO()
        encode_mp4(buf, first, FPS, a, CLIP_AUDIO_RATE, aac_coder=coder)
        return buf.getvalue()

    tags = {CLIP_AAC_CODER: " (ingest)", "twoloop": " (before)"}
    ways = [*((f"AAC 128 kbit/s, {c}{tags.get(c, '')}", lambda a, c=c: aac(a, c))
              for c in AAC_CODERS),
            ("FLAC (lossless; not used)", lambda a: _lossless(a, "flac")),
            ("PCM 16 bit (not used)", lambda a: _lossless(a, "pcm_s16le"))]
    rows = []
    for label, encode in ways:
        t = time.process_time()
        size = sum(len(encode(a)) for a in pcm)
        rows.append((label, (time.process_time() - t) / seconds, size / seconds / 1024))
    return rows


# --------------------------------------------------------------------------- report

def _report_parts(paths: list[Path]) -> None:
    from aiprod_recipes.recipes import recipe_path
    from aiprod_recipes.specio import load_spec

    cfg = load_spec(recipe_path("tiny")).ingest
    split = parts(paths, cfg)
    total = sum(split.values())
    print(f"\nwhere the stage's CPU time goes ({len(paths)} clips, parts run one after another)")
    for name, dt in split.items():
        print(f"  {name:<24} {dt:>7.2f} s {100 * dt / total:>5.1f} %")
    print(f"\nx264 presets at crf {cfg.crf} on the same clips (ingest.preset = "
          f"{cfg.preset!r}; PSNR: the clip as latents decodes it against the source in RGB)")
    print(f"  {'':<30} {'ms/frame':>9} {'KiB/frame':>10} {'PSNR dB':>8}")
    for label, ms, kib, db in presets(paths, cfg):
        print(f"  {label:<30} {ms:>9.2f} {kib:>10.2f} {db:>8.2f}")
    print("\nthe clips' sound (48 kHz stereo), CPU seconds per second of sound")
    for label, cost, kib in sound(paths):
        print(f"  {label:<30} {cost:>9.4f} s/s {kib:>7.1f} KiB/s")


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

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        raw = Path(tmp) / "project" / "raw"
        raw.mkdir(parents=True)
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
            _report_parts(paths[: args.parts])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
