"""split: assign each clip to train or val by its content hash.

A clip's side depends only on its own hash and the seed, so adding clips never moves an
existing clip between train and val, and changing the split reruns only train and evaluate
(the split is a tiny manifest; the expensive per-clip work does not depend on it).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from aiprod_recipes.names import INGEST, TRAIN_SPLIT_FILE, VAL_SPLIT_FILE
from aiprod_recipes.spec import Spec
from aiprod_recipes.stages.context import Report, StagePaths
from aiprod_recipes.store.shards import canonical_json, iter_rows


def split_draw(content_hash: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by the clip's content and the seed."""
    digest = hashlib.sha256(f"{seed}:{content_hash}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(clips: list[dict[str, Any]], val_fraction: float, seed: int) -> set[str]:
    """The ids of the val clips.

    A clip is val when its draw is below ``val_fraction``. With two or more clips and a
    non-zero fraction, at least one clip is val: when no draw falls below the fraction, the
    clip with the lowest draw is taken (only then can a new clip take that slot over).
    """
    draws = {c["item"]: split_draw(c["content_hash"], seed) for c in clips}
    val = {item for item, u in draws.items() if u < val_fraction}
    if not val and len(draws) >= 2 and val_fraction > 0:
        val = {min(draws, key=lambda item: (draws[item], item))}
    return val


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(canonical_json(r) + "\n" for r in rows), encoding="utf-8")


def run(spec: Spec, paths: StagePaths) -> Report:
    clips = [
        {"item": r["item"], "content_hash": r["content_hash"]}
        for r in iter_rows(paths.upstream(INGEST))
    ]
    val = assign(clips, spec.split.val_fraction, spec.split.seed)
    _write(paths.out / TRAIN_SPLIT_FILE, [c for c in clips if c["item"] not in val])
    _write(paths.out / VAL_SPLIT_FILE, [c for c in clips if c["item"] in val])
    return {"train": len(clips) - len(val), "val": len(val)}


def read_split(folder: Path, which: Literal["train", "val"]) -> list[str]:
    """Clip ids of the train or val side."""
    path = folder / (TRAIN_SPLIT_FILE if which == "train" else VAL_SPLIT_FILE)
    return [json.loads(line)["item"] for line in path.read_text().splitlines() if line]
