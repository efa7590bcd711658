"""Measured peak memory of a piece of work: the check on the planner's estimates.

On a CUDA device the caching allocator's own counter is the truth
(``torch.cuda.max_memory_allocated``). A CPU has no such counter, so ``LiveTensorBytes``
follows every tensor storage the work creates (a dispatch mode sees each op's outputs;
a weak reference to the storage sees it freed) and keeps the running sum and its maximum.
That is what a GPU allocator would be asked for, without its rounding and caching, so
the planner's activation model is checked against the real training step on the CPU.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

__all__ = ["LiveTensorBytes", "peak_bytes"]


class LiveTensorBytes(TorchDispatchMode):
    """Bytes of tensor storages created inside the mode and still alive; and their peak.

    Storages that existed before the mode (weights, optimizer state of earlier steps) are
    not counted: the figure is what the work adds on top of them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self._live: dict[int, weakref.ref] = {}

    def _freed(self, key: int, size: int) -> None:
        if self._live.pop(key, None) is not None:
            self.current -= size

    def _track(self, tensor: torch.Tensor) -> None:
        if tensor.device.type == "meta":
            return
        storage = tensor.untyped_storage()
        key = storage._cdata
        if key in self._live:
            return
        size = storage.nbytes()
        self._live[key] = weakref.ref(storage, lambda _ref, k=key, n=size: self._freed(k, n))
        self.current += size
        self.peak = max(self.peak, self.current)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self._track(leaf)
        return out


def peak_bytes(work: Callable[[], object], device: torch.device) -> int:
    """Peak bytes that ``work()`` adds to what is allocated on ``device`` when it starts."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        work()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    with LiveTensorBytes() as live:
        work()
    return live.peak
