"""Block swap: the last N transformer blocks keep their frozen weights in (pinned) CPU memory
and move to the device just before they run.

What musubi-tuner and diffusion-pipe users rely on for 16-24 GB cards, built on module
hooks so the model code stays ltx-core's:

- Between uses a swapped block's frozen parameters are not registered on the module (the
  CPU copy lives here), so ``model.to(device)``, accelerate and DDP see only what stays
  resident. Trainable parameters (the LoRA) never move: the optimizer holds them.
- A forward pre-hook installs device copies; a forward hook drops them. While block i runs,
  block i + 1 (or i - 1 when blocks run backwards, as checkpointed blocks recompute in the
  backward pass) is copied on a side CUDA stream, so the copy overlaps compute. On the CPU
  the same code runs with the stream path off (copies are synchronous).
- The backward pass needs the weights again. With gradient checkpointing the block's
  forward is recomputed, and the pre-hook fetches the weights once more. Without it the
  block's forward runs under saved-tensor hooks that keep a reference to the CPU copy
  instead of the device tensor, and the backward fetches the block again on first use.

The values are copied bit for bit, so outputs and gradients are the same with swap on and
off; only where the weights wait changes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import is_traceable_wrapper_subclass

from aiprod_recipes.model.errors import ModelSettingError

__all__ = ["BLOCKS", "BlockSwap", "BlockSwapError", "check_blocks_to_swap", "swap_blocks"]

BLOCKS = "transformer_blocks"
"""The ModuleList of ``BasicAVTransformerBlock`` in ``LTXModel``: what is swapped, loaded,
compiled and sharded block by block."""


class BlockSwapError(ModelSettingError):
    """``memory.blocks_to_swap`` does not fit the model."""


def check_blocks_to_swap(count: int, total: int) -> None:
    """At least one block stays on the device (the swapped ones are prefetched while it runs)."""
    if count < 0 or count >= total:
        raise BlockSwapError(
            f"memory.blocks_to_swap = {count}: the transformer has {total} blocks and at "
            f"least one stays on the device, so it must be between 0 and {total - 1}")


def _moved(t: torch.Tensor, device: torch.device, non_blocking: bool = False) -> torch.Tensor:
    """A copy of ``t`` on ``device`` (quanto's quantized tensors inner tensor by inner
    tensor, so their layout is kept as it is)."""
    if is_traceable_wrapper_subclass(t):
        names, ctx = t.__tensor_flatten__()
        inner = {n: _moved(getattr(t, n), device, non_blocking) for n in names}
        return type(t).__tensor_unflatten__(inner, ctx, t.size(), t.stride())
    return t.detach().to(device, non_blocking=non_blocking, copy=True)


def _pinned(t: torch.Tensor) -> torch.Tensor:
    """``t`` in page-locked memory (what makes a host-to-device copy asynchronous)."""
    if is_traceable_wrapper_subclass(t):
        names, ctx = t.__tensor_flatten__()
        inner = {n: _pinned(getattr(t, n)) for n in names}
        return type(t).__tensor_unflatten__(inner, ctx, t.size(), t.stride())
    return t.pin_memory()


def _record_stream(t: torch.Tensor, stream: Any) -> None:
    """Tell the caching allocator that ``stream`` uses ``t`` (it was made on another)."""
    if is_traceable_wrapper_subclass(t):
        for name in t.__tensor_flatten__()[0]:
            _record_stream(getattr(t, name), stream)
    else:
        t.record_stream(stream)


@dataclass(frozen=True)
class _Slot:
    """One frozen parameter of a swapped block and its CPU copy."""

    module: torch.nn.Module
    name: str
    home: torch.Tensor


@dataclass(frozen=True)
class _Saved:
    """What the autograd graph keeps instead of a swapped weight (or a view of it)."""

    block: int
    slot: int
    view: tuple[torch.Size, tuple[int, ...], int] | None


@dataclass
class _Pending:
    block: int
    tensors: list[torch.Tensor]
    event: Any


class BlockSwap:
    """Swaps the frozen weights of the last ``count`` blocks of ``model`` (see module doc).

    ``streams``: overlap copies with compute on a side CUDA stream; None: whenever the
    device is a CUDA device.
    """

    def __init__(self, model: torch.nn.Module, count: int, streams: bool | None = None) -> None:
        blocks = getattr(model, BLOCKS)
        check_blocks_to_swap(count, len(blocks))
        self.swapped = range(len(blocks) - count, len(blocks))
        self._anchor = next(p for n, p in model.named_parameters()
                            if not n.startswith(f"{BLOCKS}."))
        self._streams = streams
        self._side: dict[torch.device, Any] = {}
        with torch.inference_mode(False):
            self._slots = {i: self._detach(blocks[i]) for i in self.swapped}
        self._installed: dict[int, list[torch.Tensor]] = {}
        self._live: dict[int, tuple[int, int]] = {}
        self._pending: _Pending | None = None
        self._backward: dict[int, list[torch.Tensor]] = {}
        self._saving: dict[int, torch.autograd.graph.saved_tensors_hooks] = {}
        self._last: int | None = None
        self._handles = [h for i in self.swapped for h in (
            blocks[i].register_forward_pre_hook(self._before(i)),
            blocks[i].register_forward_hook(self._after(i), always_call=True))]
        if self.swapped.start > 0:
            self._handles.append(blocks[self.swapped.start - 1].register_forward_pre_hook(
                lambda *_: self._prefetch(self.swapped.start)))

    # ------------------------------------------------------------------ placement

    @property
    def device(self) -> torch.device:
        """Where the swapped blocks run: wherever the resident weights are."""
        return self._anchor.device

    def _use_streams(self, device: torch.device) -> bool:
        if device.type != "cuda":
            return False
        return self._streams if self._streams is not None else torch.cuda.is_available()

    def _detach(self, block: torch.nn.Module) -> list[_Slot]:
        """Take the block's frozen parameters off the module, keeping a CPU copy."""
        pin = self._streams is not False and torch.cuda.is_available()
        slots = []
        for module in block.modules():
            for name, param in list(module._parameters.items()):
                if param is None or param.requires_grad:
                    continue
                home = _moved(param.detach(), torch.device("cpu"))
                slots.append(_Slot(module, name, _pinned(home) if pin else home))
                module._parameters[name] = None
        return slots

    def remove(self) -> None:
        """Undo the swap: hooks off, every weight back on its module (on the CPU)."""
        for handle in self._handles:
            handle.remove()
        for i in list(self._installed):
            self._uninstall(i)
        for slots in self._slots.values():
            for slot in slots:
                slot.module._parameters[slot.name] = torch.nn.Parameter(
                    slot.home, requires_grad=False)
        self._pending, self._backward = None, {}

    # ------------------------------------------------------------------ copies

    def _fetch(self, block: int, non_blocking: bool = False) -> list[torch.Tensor]:
        return [_moved(s.home, self.device, non_blocking) for s in self._slots[block]]

    def _prefetch(self, block: int) -> None:
        """Start copying ``block`` now (only on a side stream; else it is fetched on use)."""
        device = self.device
        if block not in self.swapped or block in self._installed or not self._use_streams(
                device) or (self._pending is not None and self._pending.block == block):
            return
        stream = self._side.setdefault(device, torch.cuda.Stream(device))
        with torch.cuda.stream(stream):
            tensors = self._fetch(block, non_blocking=True)
            event = torch.cuda.Event()
            event.record(stream)
        self._pending = _Pending(block, tensors, event)

    def _take(self, block: int) -> list[torch.Tensor]:
        """The block's weights on the device: the prefetched copy, or a copy made now."""
        pending, self._pending = self._pending, None
        if pending is None or pending.block != block:
            return self._fetch(block)
        current = torch.cuda.current_stream(self.device)
        current.wait_event(pending.event)
        for t in pending.tensors:
            _record_stream(t, current)
        return pending.tensors

    # ------------------------------------------------------------------ install

    def _install(self, block: int, tensors: list[torch.Tensor]) -> None:
        for k, (slot, t) in enumerate(zip(self._slots[block], tensors, strict=True)):
            param = torch.nn.Parameter(t, requires_grad=False)
            slot.module._parameters[slot.name] = param
            self._live[id(param)] = (block, k)
        self._installed[block] = tensors

    def _uninstall(self, block: int) -> None:
        if self._installed.pop(block, None) is None:
            return
        for slot in self._slots[block]:
            param = slot.module._parameters[slot.name]
            self._live.pop(id(param), None)
            slot.module._parameters[slot.name] = None

    def _before(self, block: int) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: Any) -> None:
            for other in [i for i in self._installed if i != block]:
                self._uninstall(other)   # a recompute that stopped early left it installed
            self._backward = {}
            step = 1 if self._last is None or block >= self._last else -1
            self._last = block
            self._install(block, self._take(block))
            self._prefetch(block + step)
            if torch.is_grad_enabled() and (
                    torch._C._autograd._top_saved_tensors_default_hooks(False) is None):
                # No checkpoint owns this forward's saved tensors: keep CPU references.
                saving = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
                saving.__enter__()
                self._saving[block] = saving
        return hook

    def _after(self, block: int) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            saving = self._saving.pop(block, None)
            if saving is not None:
                saving.__exit__(None, None, None)
            self._uninstall(block)
        return hook

    # ------------------------------------------------------------------ backward

    def _pack(self, t: torch.Tensor) -> Any:
        base = t._base if t._base is not None else t
        found = self._live.get(id(base))
        if found is None:
            return t
        view = None if base is t else (t.size(), t.stride(), t.storage_offset())
        return _Saved(found[0], found[1], view)

    def _unpack(self, saved: Any) -> torch.Tensor:
        if not isinstance(saved, _Saved):
            return saved
        tensors = self._backward.get(saved.block)
        if tensors is None:
            if not self._backward:
                torch.autograd.Variable._execution_engine.queue_callback(self._end_backward)
            tensors = self._take(saved.block)
            self._backward = {saved.block: tensors}
            self._last = saved.block
            self._prefetch(saved.block - 1)
        t = tensors[saved.slot]
        if saved.view is None:
            return t
        size, stride, offset = saved.view
        return t.as_strided(size, stride, offset)

    def _end_backward(self) -> None:
        self._backward, self._pending, self._last = {}, None, None


def swap_blocks(model: torch.nn.Module, count: int,
                streams: bool | None = None) -> BlockSwap | None:
    """Swap the last ``count`` blocks of ``model`` (None when ``count`` is 0).

    Call once the model's structure is final (LoRA attached or fused, base quantized):
    the swapped weights leave the module, so later changes to them would not be seen.
    """
    if count == 0:
        return None
    return BlockSwap(model, count, streams)


def resident_bytes(model: torch.nn.Module) -> int:
    """Bytes of the parameters and buffers registered on ``model`` (what ``.to`` moves)."""
    total = 0
    for t in itertools.chain(model.parameters(), model.buffers()):
        if is_traceable_wrapper_subclass(t):
            total += sum(getattr(t, n).nbytes for n in t.__tensor_flatten__()[0])
        else:
            total += t.nbytes
    return total
