"""Where the trainable model runs, set up in the one order that works: block swap (before the
model moves, so swapped weights never reach the device), the move, ``train.compile``, then
FSDP sharding when the accelerate config asks for it (see ``sharding``).

Block swap and FSDP both decide where weights live, and FSDP shards float weights only, so
a sharded run with ``memory.blocks_to_swap`` or a quantized base is refused with the keys
to change.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from accelerate import Accelerator

from aiprod_recipes.model.errors import ModelSettingError
from aiprod_recipes.model.offload import BlockSwap, swap_blocks
from aiprod_recipes.spec import Memory, Quant, Train
from aiprod_recipes.training.compile import compile_blocks
from aiprod_recipes.training.sharding import fsdp_settings, shard

__all__ = ["Placed", "place"]


@dataclass(frozen=True)
class Placed:
    model: torch.nn.Module
    swap: BlockSwap | None
    sharded: bool
    """True when FSDP shards the model (it is then not passed to ``accelerator.prepare``)."""


def place(model: torch.nn.Module, train: Train, quant: Quant, memory: Memory,
          accelerator: Accelerator, compile_backend: str) -> Placed:
    """Swap, move, compile and shard ``model`` (in place) as the sections say."""
    fsdp = fsdp_settings() if accelerator.num_processes > 1 else None
    if fsdp is not None and memory.blocks_to_swap:
        raise ModelSettingError("memory.blocks_to_swap: block swap and FSDP both decide where "
                                "the weights live; set it to 0 under an FSDP config")
    if fsdp is not None and quant.base != "none":
        raise ModelSettingError('quant.base: FSDP shards float weights only; set it to "none" '
                                "under an FSDP config (or train with DDP)")
    swap = swap_blocks(model, memory.blocks_to_swap)
    model = model.to(accelerator.device)
    if train.compile:
        compile_blocks(model, compile_backend)
    if fsdp is not None:
        shard(model, accelerator.device, fsdp)
    return Placed(model, swap, fsdp is not None)
