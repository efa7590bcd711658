"""ingest: raw clips -> scene clips (H.264 + AAC, one frame rate) in shards, a manifest, and a
quarantine report of inputs that could not be used.

A raw clip is identified by its content hash; together with the ingest params that gives
its key. A rerun copies the scenes of every raw clip whose key is unchanged from the
previous output (DVC keeps it: the output is persistent) and processes only new or changed
clips; removed clips simply drop out. Bad media never stops the stage: each bad file is
listed with a reason and the rest go on, unless the spec asks for strict mode or nothing
usable is left. Files that are not clips at all (caption sidecars, hidden files, audio,
documents) are listed as skipped; damage found in kept clips is listed with its time in the
source, and a reused clip keeps the damage recorded when it was made.

Each scene is re-encoded at the spec's frame rate: the decoded pictures go to x264 in their
own YUV (never through RGB), at ``ingest.crf`` and ``ingest.preset``, with 48 kHz stereo AAC
from FFmpeg's fast coder. Re-encoding is most of the stage's time, so the preset is its
main speed knob (bench/bench_ingest.py prints what each one costs and keeps).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import numpy as np
from tqdm import tqdm

from aiprod_recipes.media.audio import decode_audio
from aiprod_recipes.media.encode import as_yuv420p, encode_mp4
from aiprod_recipes.media.errors import MediaError
from aiprod_recipes.media.probe import check_frame_size, probe
from aiprod_recipes.media.quarantine import Quarantine, damage_entries, recorded_damage
from aiprod_recipes.media.report import DecodeReport
from aiprod_recipes.media.scenes import detect_scenes, split_long
from aiprod_recipes.media.sources import find_clips
from aiprod_recipes.media.video import SceneFrames
from aiprod_recipes.names import CLIP_TENSOR, QUARANTINE_FILE
from aiprod_recipes.provenance import sha256_file
from aiprod_recipes.spec import Ingest, Spec
from aiprod_recipes.specio import section_values
from aiprod_recipes.stages.context import Report, StageFailed, StagePaths
from aiprod_recipes.store.shards import ShardReader, ShardWriter, item_key, open_previous

CLIP_AUDIO_RATE = 48_000
CLIP_AUDIO_CHANNELS = 2
CLIP_AAC_CODER = "fast"  # a third to a fifth of the default coder's time at 128 kbit/s
MAX_WORKERS = 8
T = TypeVar("T")
R = TypeVar("R")


def find_sources(raw_dir: Path, extensions: list[str], quarantine: Quarantine) -> list[str]:
    """Clip files under ``raw_dir`` (recursively), as sorted posix paths relative to it;
    every other file goes to the quarantine's skipped list with its reason."""
    if not raw_dir.is_dir():
        raise StageFailed(f"data.raw_dir: {raw_dir} is not a folder")
    clips, skipped = find_clips(raw_dir, extensions)
    quarantine.skipped = [s.as_dict() for s in skipped]
    return clips


POLICY_ONLY = ("strict",)
"""Ingest keys that decide what happens to bad files but never change a clip."""


def shaping_params(spec: Spec) -> dict[str, Any]:
    """The ingest params a clip's key depends on: all but the failure policy, so switching
    strict mode on reuses every clip and leaves the output byte-identical."""
    values = section_values(spec, ("ingest",))["ingest"]
    return {k: v for k, v in values.items() if k not in POLICY_ONLY}


def clip_id(source: str, sha: str, index: int) -> str:
    """A readable, unique clip id: the source's name, its hash prefix, the scene number."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(source).stem)[:48]
    return f"{stem}-{sha[:8]}-{index:03d}"


def _encode_scene(path: Path, video: SceneFrames, cfg: Ingest, start: float, end: float,
                  report: DecodeReport) -> tuple[bytes, int, tuple[int, int], bool]:
    """Decode one scene at the target fps and encode it; returns bytes, frames, size, audio.

    Decoded pictures go to x264 in their own YUV (``as_yuv420p``), never through RGB."""
    count = 0
    size = (0, 0)

    def frames():
        nonlocal count, size
        last, frame = None, None
        for _, picture in video.pictures(start, end):
            if picture is not last:  # a held picture is converted once
                last, frame = picture, as_yuv420p(picture)
            count += 1
            size = (frame.width, frame.height)
            yield frame

    audio = decode_audio(path, CLIP_AUDIO_RATE, CLIP_AUDIO_CHANNELS, start, end, report=report)
    buf = io.BytesIO()
    encode_mp4(buf, frames(), cfg.fps, audio, CLIP_AUDIO_RATE, cfg.crf, preset=cfg.preset,
               aac_coder=CLIP_AAC_CODER)
    return buf.getvalue(), count, size, audio is not None


def scenes_of(path: Path, cfg: Ingest, duration_s: float) -> list[tuple[float, float]]:
    """Scenes cut by the spec's detector, then trimmed to the allowed length range."""
    params = msgspec.to_builtins(cfg.detector)
    name = params.pop("type")
    found = detect_scenes(path, name, params, cfg.min_scene_frames, duration_s=duration_s)
    return split_long(found, cfg.min_duration_s, cfg.max_duration_s)


def process_source(path: Path, source: str, sha: str, cfg: Ingest, quarantine: Quarantine,
                   source_key: str) -> list[tuple[dict[str, Any], bytes]]:
    """All scene clips of one raw clip, as (manifest row, mp4 bytes); raises MediaError.
    Damage found on the way goes to the quarantine, under ``source_key``."""
    info = probe(path)
    check_frame_size(info, cfg.max_width, cfg.max_height)
    scenes = scenes_of(path, cfg, info.duration_s)
    if not scenes:
        raise MediaError(f"no scene of at least {cfg.min_duration_s}s "
                         f"(clip is {info.duration_s:.2f}s)", path)
    out = []
    report = DecodeReport()
    # One forward decode for all scenes, one frame at a time: the frames kept and the
    # damage times must not depend on the machine's core count (see iter_frames).
    with SceneFrames(path, cfg.fps, report=report, frame_threads=False) as video:
        for index, (start, end) in enumerate(scenes):
            data, frames, (w, h), has_audio = _encode_scene(path, video, cfg, start, end, report)
            row = {
                "source": source, "source_sha256": sha, "start_s": round(start, 6),
                "end_s": round(end, 6), "duration_s": round(frames / cfg.fps, 6),
                "fps": cfg.fps, "width": w, "height": h, "frames": frames,
                "has_audio": has_audio, "content_hash": hashlib.sha256(data).hexdigest(),
                "item": clip_id(source, sha, index),
            }
            out.append((row, data))
    quarantine.damaged.extend(damage_entries(source, source_key, scenes,
                                             [row["item"] for row, _ in out], report.events))
    return out


def _unique(hashed: list[tuple[str, str]], quarantine: Quarantine) -> list[tuple[str, str]]:
    """One source per content: byte-identical copies would only duplicate training data."""
    first: dict[str, str] = {}
    for source, sha in hashed:
        if sha in first:
            quarantine.rejected.append({"source": source,
                                        "reason": f"duplicate of {first[sha]} (same bytes)"})
        else:
            first[sha] = source
    return [(source, sha) for sha, source in first.items()]


def _reuse_rows(previous: ShardReader | None, source_key: str) -> list[dict[str, Any]]:
    if previous is None:
        return []
    return sorted((r for r in previous.rows if r.get("source_key") == source_key),
                  key=lambda r: r["key"])


def workers() -> int:
    """Sources cut at once, each on its own thread (FFmpeg, x264 and OpenCV release the GIL),
    so short clips keep many cores busy. A runtime choice: each source's clips are made the
    same way whatever the count, and they are written in key order."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(MAX_WORKERS, cores or 1))


def _in_order(fn: Callable[[T], R], items: list[T], count: int) -> Iterator[R]:
    """``fn`` over ``items`` on ``count`` threads; results in order, at most ``count`` ahead
    of the consumer, so memory stays bounded."""
    pool = ThreadPoolExecutor(count)
    pending: deque[Future[R]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > count:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(cancel_futures=True)


def run(spec: Spec, paths: StagePaths) -> Report:
    cfg = spec.ingest
    quarantine = Quarantine()
    sources = find_sources(paths.raw_dir, spec.data.extensions, quarantine)
    params = shaping_params(spec)
    print(f"ingest: {len(sources)} raw clip(s) in {paths.raw_dir}", file=sys.stderr)
    hashed = [(s, sha256_file(paths.raw_dir / s)) for s in tqdm(sources, desc="hash", unit="clip")]
    keyed = sorted((item_key(stage="ingest", sha256=sha, params=params,
                             code=paths.code_digest), s, sha)
                   for s, sha in _unique(hashed, quarantine))
    previous = open_previous(paths.previous)
    old_damage = ({} if paths.previous is None
                  else recorded_damage(paths.previous / QUARANTINE_FILE))
    reusable = {key: _reuse_rows(previous, key) for key, _, _ in keyed}

    def attempt(job: tuple[str, str, str]) -> list[tuple[dict[str, Any], bytes]] | MediaError:
        source_key, source, sha = job
        try:
            return process_source(paths.raw_dir / source, source, sha, cfg, quarantine,
                                  source_key)
        except MediaError as e:
            return e

    jobs = [job for job in keyed if not reusable[job[0]]]
    processed = reused = 0
    with ShardWriter(paths.out, previous) as writer, \
            closing(_in_order(attempt, jobs, workers())) as outcomes:
        for source_key, source, _ in tqdm(keyed, desc="ingest", unit="clip"):
            old = reusable[source_key]
            if old:
                for row in old:
                    writer.reuse(row["key"], row["item"])
                quarantine.damaged.extend(old_damage.get(source_key, []))
                reused += 1
                continue
            scenes = next(outcomes)
            if isinstance(scenes, MediaError):
                if cfg.strict:
                    raise StageFailed(f"ingest: {paths.raw_dir / source}: {scenes} "
                                      "(ingest.strict = true)") from scenes
                quarantine.rejected.append({"source": source, "reason": str(scenes)})
                continue
            processed += 1
            for index, (row, data) in enumerate(scenes):
                tensor = np.frombuffer(data, dtype=np.uint8)  # stored through numpy: no torch
                writer.add(f"{source_key}-{index:03d}", row["item"], {CLIP_TENSOR: tensor},
                           {**row, "source_key": source_key})
    quarantine.write(paths.out / QUARANTINE_FILE)
    clips = len(writer.rows)
    summary = quarantine.summary(len(sources))
    if summary:
        print(f"ingest: {summary}; details in {paths.final / QUARANTINE_FILE}", file=sys.stderr)
    if clips == 0:
        raise StageFailed(f"ingest: no usable clip in {paths.raw_dir} "
                          f"({len(quarantine.rejected)} rejected; see the quarantine report)")
    return {"sources": len(sources), "processed": processed, "reused": reused,
            "rejected": len(quarantine.rejected), "skipped": len(quarantine.skipped),
            "clips": clips}
