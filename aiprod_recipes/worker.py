"""Entry point of one accelerate worker of a stage (see ``runtime.launch_workers``).

``python -m aiprod_recipes.worker STAGE OUT SPEC [PREVIOUS]`` runs the stage's ``run`` in
this process with the paths the launching process uses; the main worker's report goes back
through a file.

A per-item stage (``StageDef.item_parallel``) gets its share of the items from accelerate's
process state (rank, count, barrier), and every worker writes its part under the main
process's output: workers started on another machine (``runtime.join_workers``, OUT empty)
learn that folder from the main process.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiprod_recipes.registry import get_stage
from aiprod_recipes.runtime import stage_module, stage_paths, write_worker_report
from aiprod_recipes.specio import load_spec
from aiprod_recipes.store.parts import Share

WAIT_LIMIT = timedelta(days=1)
"""How long a worker that finished its share waits for the others at the barrier (the
process group's timeout): shares differ by a clip or two, but a slow first model load or a
long clip must not abort a run that is going well."""


def _from_main(state: Any, text: str) -> str:
    """``text`` as the main process has it (sent to every process of the group)."""
    import torch
    import torch.distributed as dist

    data = text.encode() if state.is_main_process else b""
    size = torch.tensor([len(data)], dtype=torch.int64, device=state.device)
    dist.broadcast(size, src=0)
    buffer = torch.zeros(int(size.item()), dtype=torch.uint8, device=state.device)
    if state.is_main_process:
        buffer.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    dist.broadcast(buffer, src=0)
    return bytes(buffer.cpu().numpy()).decode()


def item_share(out: str, previous: str) -> tuple[Share, str, str]:
    """This process's share of a per-item stage, and the main process's output and
    previous-output folders (where every process reads and writes)."""
    import torch
    from accelerate import PartialState

    # Without a GPU, accelerate forms the group only when told it is a CPU run (gloo).
    state = PartialState(cpu=not torch.cuda.is_available(), timeout=WAIT_LIMIT)
    share = Share(rank=state.process_index, count=state.num_processes,
                  wait=state.wait_for_everyone)
    if share.count > 1:
        out, previous = json.loads(_from_main(state, json.dumps([out, previous])))
    return share, out, previous


def main(name: str, out: str, spec_file: str, previous: str = "") -> None:
    spec = load_spec(spec_file)
    stage = get_stage(name, spec)
    share, scratch = Share(), None
    if stage.item_parallel:
        share, out, previous = item_share(out, previous)
    elif not out:  # joined from another machine: only the main process writes
        scratch = tempfile.mkdtemp(prefix=f"aiprod-{name}-worker-")
        out = scratch
    try:
        paths = stage_paths(stage, spec, Path(out), Path(previous) if previous else None,
                            spec_file, share=share)
        report = stage_module(stage).run(spec, paths)
        if report and share.main:
            more = {"processes": share.count} if share.count > 1 else {}
            write_worker_report(Path(out), {**report, **more})
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main(*sys.argv[1:5])
