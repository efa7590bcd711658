"""Stage start cost: a no-op ``aiprod-recipes run reference`` against ``import torch``.

A stage that has nothing to do should cost about as much as starting Python with torch
(goal: <= 1.5x the bare torch import, in wall time and in peak RSS). The no-op is the
reference stage with ``reference.enabled = false`` in a prepared tiny project (base and
ingest already run on two generated clips, dvc.yaml rendered so the stage's render check
runs too): it validates the spec, checks its inputs, writes an empty manifest and its
provenance. Each command runs in its own process, alternating, several times; the figures
are medians (peak RSS of each process from ``wait4``).

    python bench/bench_start.py [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PREPARE = """
from aiprod_recipes import render
from aiprod_recipes.runtime import run_stage
from aiprod_recipes.specio import load_spec
render.write(load_spec("params.toml"))
for stage in ("base", "ingest"):
    run_stage(stage)
"""


def child_env() -> dict[str, str]:
    """This checkout first on the path of every child, one math thread each."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO),
            "OMP_NUM_THREADS": "1"}


def timed(args: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one command run to its end."""
    started = time.perf_counter()
    proc = subprocess.Popen(args, cwd=cwd, env=child_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        stderr = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{' '.join(args)} exited {proc.returncode}:\n{stderr}")
    if proc.stderr:
        proc.stderr.close()
    return elapsed, usage.ru_maxrss / 1024


def prepare(root: Path) -> None:
    """A tiny project with references off (the tiny recipe's default), base and ingest run."""
    from bench.bench_latents import make_clips
    from tests.conftest import write_spec

    make_clips(root / "raw", 2)
    write_spec(root, data={"raw_dir": "raw"}, reference={"enabled": False},
               video={"buckets": [{"width": 64, "height": 64, "frames": 17}]})
    subprocess.run([sys.executable, "-c", PREPARE], cwd=root, env=child_env(), check=True,
                   capture_output=True)


def stage_command() -> list[str]:
    """``aiprod-recipes run reference`` as a user types it (the console script)."""
    script = Path(sys.executable).with_name("aiprod-recipes")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "aiprod_recipes"]
    return [*head, "run", "reference"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    commands = {"import torch": [sys.executable, "-c", "import torch"],
                "run reference (off)": stage_command()}
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp:
        root = Path(tmp)
        prepare(root)
        for cmd in commands.values():  # warm the file cache once, untimed
            timed(cmd, root)
        for _ in range(args.repeats):
            for name, cmd in commands.items():
                figures[name].append(timed(cmd, root))
    medians = {name: (statistics.median(w for w, _ in runs),
                      statistics.median(m for _, m in runs)) for name, runs in figures.items()}
    print(f"start cost, median of {args.repeats} runs each:")
    print(f"{'command':<22} {'wall s':>8} {'peak RSS MB':>12}")
    for name, (wall, rss) in medians.items():
        print(f"{name:<22} {wall:>8.2f} {rss:>12.0f}")
    (torch_wall, torch_rss), (stage_wall, stage_rss) = medians.values()
    print(f"no-op stage / import torch: wall {stage_wall / torch_wall:.2f}x, "
          f"peak RSS {stage_rss / torch_rss:.2f}x (goal: <= 1.5x)")


if __name__ == "__main__":
    main()
