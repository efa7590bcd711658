"""Stage start is cheap: a stage imports what it uses, when it uses it.

Each check runs in a fresh interpreter (what ``aiprod-recipes run STAGE`` starts) and reads
``sys.modules`` at the end: the preprocessing stage modules import no torch, loading the
VAEs for latents never imports Gemma or transformers, and the reference stage with
references off runs to its end without torch, ltx-core or the media libraries.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from aiprod_recipes.model.tiny import TinyPaths
from aiprod_recipes.names import BASE, CHECKPOINT_FILE, GEMMA_DIR, INGEST, stage_dir
from aiprod_recipes.store.shards import ShardWriter
from tests.conftest import REPO, write_spec
from tests.model_fixtures import tiny_model  # noqa: F401  (fixture)

HEAVY = ("torch", "ltx_core", "transformers", "av", "cv2", "accelerate")

PROBE = """
import json, sys
{body}
mods = set(sys.modules)
print(json.dumps({{"loaded": [m for m in {heavy!r} if m in mods],
                   "gemma": sorted(m for m in mods if m.startswith("ltx_core.text_encoders"))}}))
"""


def imported_after(body: str, cwd: Path) -> dict[str, list[str]]:
    """Which heavy packages (and ltx-core Gemma modules) a fresh interpreter holds after
    running ``body``."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", PROBE.format(body=body, heavy=HEAVY)],
                          cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_stage_modules_import_no_torch(tmp_path: Path) -> None:
    body = "\n".join(f"import aiprod_recipes.stages.{name}" for name in
                     ("caption", "embed", "latents", "reference", "split"))
    body += "\nimport aiprod_recipes.runtime, aiprod_recipes.worker, aiprod_recipes.cli"
    assert imported_after(body, tmp_path) == {"loaded": [], "gemma": []}


def test_latents_model_loads_without_gemma(tiny_model: TinyPaths, tmp_path: Path) -> None:  # noqa: F811
    body = f"""
import aiprod_recipes.stages.latents
from aiprod_recipes.model.loader import load_components
import torch
c = load_components({str(tiny_model.checkpoint)!r}, None, {{"video_encoder", "audio_encoder"}},
                    "cpu", torch.float32)
assert c.video_encoder is not None and c.audio_encoder is not None
"""
    found = imported_after(body, tmp_path)
    assert "transformers" not in found["loaded"] and found["gemma"] == []
    assert "torch" in found["loaded"] and "ltx_core" in found["loaded"]


def test_ingest_runs_without_torch(tmp_path: Path) -> None:
    """Scene clips are stored as numpy arrays of mp4 bytes: ingest never needs torch."""
    (tmp_path / "raw").mkdir()
    shutil.copy(REPO / "data" / "sample" / "pulse.mp4", tmp_path / "raw")
    write_spec(tmp_path, data={"raw_dir": "raw"})
    body = """
from aiprod_recipes.runtime import run_stage
assert run_stage("ingest")["clips"] >= 1
"""
    assert "torch" not in imported_after(body, tmp_path)["loaded"]


def test_reference_off_runs_without_torch(tiny_model: TinyPaths, tmp_path: Path) -> None:  # noqa: F811
    base = tmp_path / stage_dir(BASE)
    base.mkdir(parents=True)
    shutil.copy(tiny_model.checkpoint, base / CHECKPOINT_FILE)
    shutil.copytree(tiny_model.gemma_dir, base / GEMMA_DIR)
    ShardWriter(tmp_path / stage_dir(INGEST)).close()
    (tmp_path / "raw").mkdir()
    write_spec(tmp_path, data={"raw_dir": "raw"}, reference={"enabled": False})
    body = """
from aiprod_recipes.runtime import run_stage
assert run_stage("reference") == {"enabled": False, "clips": 0}
"""
    assert imported_after(body, tmp_path) == {"loaded": [], "gemma": []}
    assert (tmp_path / stage_dir("reference") / "manifest.jsonl").read_text() == ""
