"""DVC's bookkeeping cost with many clips: sharded stage outputs versus one file per clip.

In a throw-away git + DVC repository, N small synthetic clips (a folder tracked with
``dvc add``) feed a two-stage pipeline: ``encode`` writes one item per clip, ``summarize``
reads them all. The encode stage writes either our layout (``ShardWriter``: items in at most
256 prefix shards plus a manifest) or the naive one (a safetensors file per clip). For each
layout this prints the first ``dvc repro``, the no-op ``dvc repro`` and ``dvc status``
that follow (best of a few runs), ``dvc push`` of the encode stage's output to a local
remote and ``dvc pull`` of it into a fresh clone, and the file count of that output.
Figures only, no targets.

Run: ``python bench/bench_dvc_scale.py [N]`` (default 1000).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CLIPS = 1000
CLIP_BYTES = 2048
REPEATS = 3
BIN = Path(sys.executable).parent

ENCODE = '''\
import hashlib, sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from aiprod_recipes.store.shards import ShardWriter, item_key

layout, src, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
out.mkdir(parents=True, exist_ok=True)
items = []
for clip in sorted(src.iterdir()):
    data = clip.read_bytes()
    key = item_key(stage="encode", sha256=hashlib.sha256(data).hexdigest())
    latent = torch.frombuffer(bytearray(data), dtype=torch.uint8).float().reshape(-1, 16) / 255
    items.append((key, clip.stem, latent))
if layout == "sharded":
    with ShardWriter(out) as writer:
        for key, name, latent in sorted(items):
            writer.add(key, name, {"latent": latent})
else:
    for key, name, latent in items:
        save_file({"latent": latent}, str(out / f"{name}.safetensors"))
'''

SUMMARIZE = '''\
import json, sys
from pathlib import Path

src, out = Path(sys.argv[1]), Path(sys.argv[2])
files = sorted(p for p in src.rglob("*") if p.is_file())
out.write_text(json.dumps({"files": len(files), "bytes": sum(p.stat().st_size for p in files)}))
'''

DVC_YAML = '''\
stages:
  encode:
    cmd: {python} encode.py {layout} clips encoded
    deps: [clips, encode.py]
    outs: [encoded]
  summarize:
    cmd: {python} summarize.py encoded summary.json
    deps: [encoded, summarize.py]
    outs: [summary.json]
'''


def run(args: list[str], cwd: Path) -> float:
    """Run a command; its wall time in seconds."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "DVC_NO_ANALYTICS": "1"}
    started = time.perf_counter()
    proc = subprocess.run(args, cwd=cwd, env=env, text=True, capture_output=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def best(args: list[str], cwd: Path) -> float:
    return min(run(args, cwd) for _ in range(REPEATS))


def make_repo(root: Path, layout: str, clips: int) -> None:
    """git + DVC repository with ``clips`` synthetic clips tracked and the pipeline."""
    root.mkdir(parents=True)
    for args in (["git", "init", "-q", "-b", "main"],
                 ["git", "config", "user.email", "bench@example.com"],
                 ["git", "config", "user.name", "bench"],
                 [str(BIN / "dvc"), "init", "-q"],
                 [str(BIN / "dvc"), "config", "core.analytics", "false"]):
        run(args, root)
    rng = np.random.default_rng(0)
    (root / "clips").mkdir()
    for i in range(clips):
        (root / "clips" / f"clip-{i:05d}.mp4").write_bytes(rng.bytes(CLIP_BYTES))
    (root / "encode.py").write_text(ENCODE)
    (root / "summarize.py").write_text(SUMMARIZE)
    (root / "dvc.yaml").write_text(DVC_YAML.format(python=sys.executable, layout=layout))
    run([str(BIN / "dvc"), "add", "-q", "clips"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "-m", "pipeline"], root)


def measure(root: Path) -> dict[str, float]:
    dvc = str(BIN / "dvc")
    figures = {"first repro": run([dvc, "repro", "-q"], root)}
    run([dvc, "remote", "add", "-d", "store", str(root.parent / f"{root.name}-store")], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "-m", "outputs"], root)
    figures["no-op repro"] = best([dvc, "repro", "-q"], root)
    figures["status"] = best([dvc, "status", "-q"], root)
    figures["push"] = run([dvc, "push", "-q", "encode"], root)
    clone = root.parent / f"{root.name}-clone"
    run(["git", "clone", "-q", str(root), str(clone)], root.parent)
    figures["pull"] = run([dvc, "pull", "-q", "encode"], clone)
    figures["files"] = sum(1 for p in (root / "encoded").rglob("*") if p.is_file())
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", type=int, nargs="?", default=CLIPS,
                        help=f"synthetic clips (default {CLIPS})")
    clips = parser.parse_args().clips
    print(f"DVC bookkeeping with {clips} clips ({CLIP_BYTES} B each), best of {REPEATS}:")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-dvc-scale-") as tmp:
        for layout in ("sharded", "per-file"):
            root = Path(tmp) / layout
            make_repo(root, layout, clips)
            rows.append((layout, measure(root)))
    cols = ("first repro", "no-op repro", "status", "push", "pull")
    print(f"{'layout':<10} {'out files':>9} " + " ".join(f"{c + ' s':>14}" for c in cols))
    for layout, f in rows:
        print(f"{layout:<10} {int(f['files']):>9} " + " ".join(f"{f[c]:>14.2f}" for c in cols))


if __name__ == "__main__":
    main()
