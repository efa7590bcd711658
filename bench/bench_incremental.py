"""What adding one clip costs: ``dvc repro`` of ingest through latents, 100 clips vs 100 + 1.

In a throw-away git + DVC copy of the pipeline (the tiny recipe, sidecar captions, one
64x64x17 bucket), N short clips with captions (default 100; 2 s, 160x96, with sound,
generated here) are tracked with ``dvc add``. After the base stage (untimed), it measures

- full:  ``dvc repro embed latents`` on the N clips (ingest, caption, embed, latents);
- +1:    one new clip and caption copied in, ``dvc add``, the same ``dvc repro`` again
         (median of a few additions, each a new clip; ``dvc add`` is timed apart);
- no-op: the same ``dvc repro`` with nothing changed.

and prints wall and CPU seconds (the CPU figures, of every process the command started,
hold better on a busy machine), the ratios +1 / full (goal: <= 5%), and where the wall
time of the last +1 run goes: each stage's own work (its "done in" line, which includes
the imports a stage makes when it needs them) and the rest (interpreter starts, spec
checks, provenance, DVC's hashing and bookkeeping).

What the figures say: with the tiny model the four stages spend about a fifth of a second
of work on a clip, so the +1 run is almost all fixed cost, paid once per run whatever the
clip count: importing torch (over a second, in embed and in latents), transformers and
ltx-core's Gemma package on top (some 2.5 s, in embed, whenever a caption is new), DVC's own
start and lock updates (about a second), and four interpreter starts (a quarter of a
second each, spec check included). Reused items cost nearly nothing. A 5% share needs a
full run some twenty times that floor, i.e. clips that cost seconds each to process, not a
tenth of one.

    python bench/bench_incremental.py [--clips N] [--additions K]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BIN = Path(sys.executable).parent
RENDER = "from aiprod_recipes import render, specio; render.write(specio.load_spec('params.toml'))"
"""Rendered in the project by this checkout's code (the stage commands run it too)."""
TARGETS = ("embed", "latents")
"""With their upstream stages: ingest, caption, embed, latents."""
DONE = re.compile(r"\[(\w+)\] done in ([0-9.]+)s")


def env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO),
            "DVC_NO_ANALYTICS": "1", "OMP_NUM_THREADS": "1"}


def run(args: list[str], cwd: Path) -> tuple[float, str, float]:
    """Wall seconds, combined output and CPU seconds (user + system, the command and every
    process it started) of one command, which must succeed."""
    started = time.perf_counter()
    proc = subprocess.Popen(args, cwd=cwd, env=env(), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{out}")
    return elapsed, out, usage.ru_utime + usage.ru_stime


def make_clips(folder: Path, first: int, count: int) -> None:
    """Clips ``first`` .. ``first + count - 1`` with a sidecar caption each."""
    from bench.bench_latents import make_clips as make_mp4s

    with tempfile.TemporaryDirectory() as tmp:
        make_mp4s(Path(tmp) / "clips", first + count)
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(first, first + count):
            shutil.move(Path(tmp) / "clips" / f"clip{i:03d}.mp4", folder / f"clip{i:03d}.mp4")
            (folder / f"clip{i:03d}.txt").write_text(f"a moving gradient, tone {i}\n")


def make_project(root: Path, clips: int) -> None:
    """git + DVC copy of the pipeline with ``clips`` clips tracked, base stage run."""
    from tests.conftest import write_spec

    dvc = str(BIN / "dvc")
    root.mkdir(parents=True)
    for args in (["git", "init", "-q", "-b", "main"], ["git", "config", "user.email", "b@x"],
                 ["git", "config", "user.name", "bench"], [dvc, "init", "-q"],
                 [dvc, "config", "core.analytics", "false"]):
        run(args, root)
    shutil.copytree(REPO / "aiprod_recipes", root / "aiprod_recipes",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(REPO / ".gitignore", root / ".gitignore")
    make_clips(root / "raw", 0, clips)
    write_spec(root, data={"raw_dir": "raw"},
               video={"buckets": [{"width": 64, "height": 64, "frames": 17}]})
    run([sys.executable, "-c", RENDER], root)
    run([dvc, "add", "-q", "raw"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "-m", "pipeline"], root)
    run([dvc, "repro", "base"], root)


def stage_seconds(log: str) -> dict[str, float]:
    return {name: float(s) for name, s in DONE.findall(log)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--additions", type=int, default=3)
    args = parser.parse_args()
    dvc = str(BIN / "dvc")
    with tempfile.TemporaryDirectory(prefix="bench-incremental-") as tmp:
        root, extra = Path(tmp) / "project", Path(tmp) / "extra"
        make_clips(extra, args.clips, args.additions)
        make_project(root, args.clips)
        full, _, full_cpu = run([dvc, "repro", *TARGETS], root)
        adds, repros, cpus, log = [], [], [], ""
        for i in range(args.clips, args.clips + args.additions):
            for suffix in (".mp4", ".txt"):
                shutil.copy2(extra / f"clip{i:03d}{suffix}", root / "raw")
            adds.append(run([dvc, "add", "-q", "raw"], root)[0])
            seconds, log, cpu = run([dvc, "repro", *TARGETS], root)
            if os.environ.get("BENCH_VERBOSE"):
                print(log)
            repros.append(seconds)
            cpus.append(cpu)
        noop, _, noop_cpu = run([dvc, "repro", *TARGETS], root)
    one, one_cpu = statistics.median(repros), statistics.median(cpus)
    print(f"ingest through latents with dvc repro, {args.clips} clips (2 s, 160x96, sound):")
    print(f"{'':14} {'wall s':>8} {'CPU s':>8}")
    print(f"{'full run':14} {full:8.1f} {full_cpu:8.1f}")
    print(f"{'+1 clip':14} {one:8.1f} {one_cpu:8.1f}   (median of {args.additions}; "
          f"walls {', '.join(f'{s:.1f}' for s in repros)}; dvc add "
          f"{statistics.median(adds):.1f} s wall)")
    print(f"{'no change':14} {noop:8.1f} {noop_cpu:8.1f}")
    print(f"+1 clip / full run: wall {one / full:.1%}, CPU {one_cpu / full_cpu:.1%} "
          "(goal: <= 5%)")
    own = stage_seconds(log)
    print("last +1 run, wall: " + ", ".join(f"{k} {v:.1f} s" for k, v in own.items())
          + f" (each stage's own work, its lazy imports included); interpreter starts, "
          f"spec checks, provenance and DVC {repros[-1] - sum(own.values()):.1f} s")


if __name__ == "__main__":
    main()
