"""Entry point of one accelerate worker of the train stage (see training/distributed.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from aiprod_recipes.registry import model_paths
from aiprod_recipes.runtime import StagePaths
from aiprod_recipes.specio import load_spec
from aiprod_recipes.stages.train import train
from aiprod_recipes.training.distributed import write_report


def main(out: str, spec_file: str) -> None:
    spec = load_spec(spec_file)
    paths = StagePaths(out=Path(out), previous=None, raw_dir=Path(spec.data.raw_dir),
                       model=model_paths(spec))
    report = train(spec, paths)
    if report:
        write_report(Path(out), report)


if __name__ == "__main__":
    main(*sys.argv[1:3])
