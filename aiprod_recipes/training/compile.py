"""``train.compile``: torch.compile each transformer block, as the seed's ddp_compile and
fsdp_compile configurations do.

Regional compilation: every ``BasicAVTransformerBlock`` runs the same code, so the blocks
share one compiled graph (compiling the first warms the cache for the other 47), and the
start-up cost is one block's, not the model's. Only ``forward`` is compiled, in place:

- module hooks stay in eager mode, so block swap's copies and its saved-tensor hooks run
  as they do without compilation, and checkpointing recomputes through the compiled code;
- parameter names do not change (``torch.compile(module)`` would add ``_orig_mod.`` to
  every key), so adapters, checkpoints and FSDP wrapping see the same model.

The real runs use inductor. The compiled kernels reorder floating-point sums, so results
match the eager ones within rounding, not bit for bit; that is why ``compile`` lives in the
``train`` section: turning it on or off reruns training (and resumes only its own
checkpoints) instead of passing a different model off as the same output.
"""

from __future__ import annotations

import torch

from aiprod_recipes.model.offload import BLOCKS

__all__ = ["DEFAULT_BACKEND", "compile_blocks"]

DEFAULT_BACKEND = "inductor"


def compile_blocks(model: torch.nn.Module, backend: str = DEFAULT_BACKEND) -> int:
    """Compile the forward of every transformer block of ``model`` in place; returns how
    many. ``backend`` is torch.compile's ("inductor"; tests use "aot_eager", which needs
    no compiler toolchain)."""
    blocks = getattr(model, BLOCKS, None)
    if blocks is None:
        raise ValueError(f"train.compile: {type(model).__name__} has no {BLOCKS} to compile")
    for block in blocks:
        block.forward = torch.compile(block.forward, backend=backend)
    return len(blocks)
