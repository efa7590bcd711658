"""Training in several processes (DDP, FSDP through accelerate): what differs per process.

The processes are started by the runtime (``runtime.launch_workers``) from one stage
command; each trains on its own share of the batches and only the main one writes.
"""

from __future__ import annotations

import os
from typing import Any

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


def is_main_before_setup() -> bool:
    """Whether this process is the main one, before the Accelerator exists (``accelerate
    launch`` sets RANK in every worker; a single process has none)."""
    return os.environ.get("RANK", "0") == "0"


def shards_model(accelerator: Any) -> bool:
    """The model's weights are split across processes (FSDP, DeepSpeed), so no process can
    run it alone."""
    from accelerate.utils import DistributedType

    from aiprod_recipes.training.sharding import fsdp_settings

    if accelerator.num_processes > 1 and fsdp_settings() is not None:
        return True
    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
