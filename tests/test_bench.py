"""Every benchmark in bench/ still runs: at the smallest sizes, each prints its figures.

The figures themselves are never asserted (timings belong to the benchmarks); what is
checked is that a benchmark anyone may run to check a claim has not silently broken after
a change elsewhere (an input rule, a renamed module).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

RUNS = {
    "bench_start.py": (["--repeats", "1"], "no-op stage / import torch"),
    "bench_latents.py": (["--sizes", "1", "2"], "peak RSS growth"),
    "bench_train.py": (["--steps", "2", "--size", "32x32x9"], "pipeline overhead"),
    "bench_dvc_scale.py": (["3"], "per-file"),
    "bench_incremental.py": (["--clips", "2", "--additions", "1"], "+1 clip / full run"),
    "bench_ingest.py": (["--clips", "2", "--parts", "1", "--size", "96x64", "--seconds", "1"],
                        "ingest stage (goal >= 0.8)"),
    "plan_presets.py": ([], "ltx2-av-lora-lowvram"),
}


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(RUNS))
def test_benchmark_runs_and_prints_its_figures(script: str) -> None:
    args, expected = RUNS[script]
    proc = subprocess.run([sys.executable, str(REPO / "bench" / script), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert expected in proc.stdout


def test_every_benchmark_is_run_here() -> None:
    """A new benchmark gets its line in RUNS (gpu_check.py has its own test)."""
    scripts = {p.name for p in (REPO / "bench").glob("*.py")} - {"gpu_check.py", "__init__.py"}
    assert scripts == set(RUNS)
