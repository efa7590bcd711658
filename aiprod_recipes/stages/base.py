"""base: build the tiny, seeded LTX-2 checkpoint and Gemma folder the default recipe uses.

Only present when ``model.source.type = "tiny"``: a fresh clone then runs end to end on a CPU
with no download, through exactly the loader a real checkpoint uses. Same seed, same bytes.
"""

from __future__ import annotations

from aiprod_recipes.model.header import checkpoint_fingerprint
from aiprod_recipes.model.tiny import build_tiny_model
from aiprod_recipes.spec import Spec, TinyModel
from aiprod_recipes.stages.context import Report, StagePaths


def run(spec: Spec, paths: StagePaths) -> Report:
    source = spec.model.source
    if not isinstance(source, TinyModel):
        raise TypeError("the base stage only builds tiny models")
    built = build_tiny_model(paths.out, seed=source.seed, layers=source.layers)
    size_mb = built.checkpoint.stat().st_size / 2**20
    return {"fingerprint": checkpoint_fingerprint(built.checkpoint)[:16],
            "checkpoint_mb": round(size_mb, 1)}
