"""Entry point of one accelerate worker of a stage (see ``runtime.launch_workers``).

``python -m aiprod_recipes.worker STAGE OUT SPEC [PREVIOUS]`` runs the stage's ``run`` in
this process with the paths the launching process uses; the main worker's report goes back
through a file.
"""

from __future__ import annotations

import sys
from pathlib import Path

from aiprod_recipes.registry import get_stage
from aiprod_recipes.runtime import stage_module, stage_paths, write_worker_report
from aiprod_recipes.specio import load_spec


def main(name: str, out: str, spec_file: str, previous: str = "") -> None:
    spec = load_spec(spec_file)
    stage = get_stage(name, spec)
    paths = stage_paths(stage, spec, Path(out), Path(previous) if previous else None,
                        spec_file)
    report = stage_module(stage).run(spec, paths)
    if report:
        write_worker_report(Path(out), report)


if __name__ == "__main__":
    main(*sys.argv[1:5])
