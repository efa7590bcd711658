"""What a stage receives from the runtime and what it may raise: the stage-facing contract.

A stage module exposes ``run(spec, paths) -> Report``. Everything it may read or write
arrives in ``StagePaths``, built by the runtime from the stage registry, so a stage never
decides a path and can only read the stages it declares (and DVC therefore tracks).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiprod_recipes.model.runtime import ModelPaths
from aiprod_recipes.names import SPEC_FILE
from aiprod_recipes.store.parts import Share, shard_writer
from aiprod_recipes.store.shards import ShardWriter

Report = dict[str, Any]
"""What a stage returns: a few counts and figures, printed when the stage ends."""


class StageFailed(RuntimeError):
    """A stage could not produce its output; the message says why, for a person."""


class UndeclaredUpstream(LookupError):
    """A stage asked for the output of a stage it does not declare as an input."""


@dataclass(frozen=True)
class StagePaths:
    """The paths one stage run may touch, and the spec sections it declares."""

    out: Path
    """Temporary folder the stage writes into; it replaces the real output on success."""
    previous: Path | None
    """The output of the previous run (kept by DVC for persistent outputs), for reuse."""
    raw_dir: Path
    model: ModelPaths
    final: Path
    """Where the output lands when the stage succeeds (for messages and reports)."""
    spec_file: Path = Path(SPEC_FILE)
    """The spec this run was started with (passed on to worker processes)."""
    sections: tuple[str, ...] = ()
    """The spec sections (or dotted keys) the stage declares as params for this spec (its
    fingerprints record them)."""
    upstreams: Mapping[str, Path] = field(default_factory=dict)
    """Stage name -> finished output folder, for every stage this one declares as input."""
    code_digest: str = ""
    """A digest of the stage's code (every package module it imports): per-item stages
    key their items on it, so items computed by other code are not reused."""
    share: Share = field(default_factory=Share)
    """This process's share of the items when the stage runs as several processes
    (``aiprod_recipes.store.parts``); one process by default."""

    def shard_writer(self) -> ShardWriter:
        """The writer of this run's per-item output (``store.parts.shard_writer``): reuses
        the previous output's unchanged items; under several processes this process
        computes only its share and the main one writes the merged output."""
        return shard_writer(self.out, self.previous, self.share)

    def upstream(self, stage: str) -> Path:
        """The finished output folder of a stage this one reads.

        Reading an undeclared stage would be a dependency DVC does not know about, so a
        change there would not rerun this stage: it is refused.
        """
        if stage not in self.upstreams:
            declared = ", ".join(self.upstreams) or "none"
            raise UndeclaredUpstream(f"stage output {stage!r} is not a declared input of this "
                                     f"stage (declared: {declared})")
        return self.upstreams[stage]
