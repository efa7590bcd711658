"""Training in several processes (DDP, FSDP through accelerate): what differs per process.

The processes are started by the runtime (``runtime.launch_workers``) from one stage
command; each trains on its own share of the batches and only the main one writes.
"""

from __future__ import annotations

import torch

from aiprod_recipes.training.objective import Generators


def decorrelate(generators: Generators, rank: int, step: int) -> None:
    """Give every worker but the main one its own noise: the same seed everywhere would
    make all workers draw the same noise levels and noise for different clips."""
    if rank == 0:
        return
    for offset, g in enumerate(generators.as_dict().values()):
        g.manual_seed(int(torch.randint(0, 2**31, (1,), generator=g).item())
                      + 7919 * rank + 104_729 * step + offset)
