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
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["LiveTensorBytes", "peak_bytes"]


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    """The tensors in an op's arguments or results (flat containers only, as ATen has)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


_ALLOCATES: dict[Any, bool] = {}


def _allocates(func: Any) -> bool:
    """Whether ``func``'s results are new storages: not views, not in-place or out= results
    (the schema marks those returns as aliases of an input)."""
    if func not in _ALLOCATES:
        _ALLOCATES[func] = not any(r.alias_info is not None for r in func._schema.returns)
    return _ALLOCATES[func]


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
        if _allocates(func):
            for tensor in _tensors(out):
                self._track(tensor)
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
