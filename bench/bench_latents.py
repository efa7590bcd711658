"""Latents stage throughput and peak memory for 10 and for 40 clips, in one run.

The stage streams clips one at a time, so peak RSS should not grow with the number of clips
(goal: the 40-clip run within +10% of the 10-clip run). Each measurement runs in its own
process (peak RSS of that process alone); the ingest and base stages run first, untimed.

    python bench/bench_latents.py [--sizes 10 40]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CHILD = """
import json, resource, sys, time
from aiprod_recipes.runtime import run_stage
for stage in ("base", "ingest"):
    run_stage(stage)
start = time.perf_counter()
report = run_stage("latents")
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "report": report,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_clips(folder: Path, count: int) -> None:
    """Distinct 2 s clips with sound (moving gradients and tones)."""
    from aiprod_recipes.media.encode import encode_mp4

    folder.mkdir(parents=True)
    xs = np.linspace(0, 1, 160)[None, :, None]
    for i in range(count):
        frames = [np.clip(((xs + t / 48 + i / count) % 1) * 255 * np.ones((96, 1, 3)), 0, 255)
                  .astype(np.uint8) for t in range(48)]
        t = np.arange(32000) / 16000
        audio = (0.3 * np.sin(2 * np.pi * (220 + 20 * i) * t))[None].astype(np.float32)
        encode_mp4(folder / f"clip{i:03d}.mp4", frames, 24, audio, 16000)


def measure(count: int) -> dict:
    from tests.conftest import write_spec

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_clips(root / "raw", count)
        write_spec(root, data={"raw_dir": "raw"},
                   video={"buckets": [{"width": 64, "height": 64, "frames": 17}]})
        proc = subprocess.run([sys.executable, "-c", CHILD], cwd=root, capture_output=True,
                              text=True, check=True)
        return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 40])
    args = parser.parse_args()
    results = {n: measure(n) for n in args.sizes}
    print(f"{'clips':>6} {'seconds':>9} {'clips/s':>8} {'peak RSS MB':>12}")
    for n, r in results.items():
        print(f"{n:>6} {r['seconds']:>9.2f} {n / r['seconds']:>8.2f} {r['peak_rss_mb']:>12.0f}")
    first, last = results[args.sizes[0]], results[args.sizes[-1]]
    growth = last["peak_rss_mb"] / first["peak_rss_mb"] - 1
    print(f"peak RSS growth {args.sizes[0]} -> {args.sizes[-1]} clips: {growth:+.1%} "
          "(goal: within +10%)")


if __name__ == "__main__":
    main()
