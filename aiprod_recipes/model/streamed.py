"""Load the LTX-2 transformer block by block, so a 19B base never has to fit twice.

ltx-core's ``SingleGPUModelBuilder`` reads the whole state dict onto the device and then
fills the model: right for a base that fits in full precision, wrong for the low-memory
runs (a bf16 19B transformer is about 38 GB before anything is quantized). Here the model
is built on the meta device from the same configurator and the same key map, then filled
one group at a time straight from the memory-mapped safetensors file: first everything
outside ``transformer_blocks`` (small), then each block in turn. A block goes to the
device, is quantized there when ``quant`` asks for it (the same quanto call a whole-model
quantization makes, on the same device, so the weights are the same), and a block that
block swap keeps on the CPU goes back there. At any moment at most one block exists in
full precision, so the peak device memory while loading is the quantized size plus one
block.

``state_hooks`` see each group's tensors (model keys, on their way in, in ``dtype``) before
they are loaded: ``sample`` fuses its adapters there, before the base is quantized.
``on_block(index, model)`` runs after each block is in place: a progress hook, and the
place tests check that nothing else was materialised.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from ltx_core.loader.sd_ops import SDOps
from ltx_core.loader.sft_loader import SafetensorsModelStateDictLoader
from ltx_core.model.transformer.model import LTXModel
from ltx_core.model.transformer.model_configurator import (
    LTXV_MODEL_COMFY_RENAMING_MAP,
    LTXModelConfigurator,
)
from safetensors import safe_open

from aiprod_recipes.model.offload import BLOCKS, check_blocks_to_swap
from aiprod_recipes.model.quant import base_targets, check_quant_runs, quantize_linears

__all__ = ["BlockHook", "StateHook", "load_transformer"]


BlockHook = Callable[[int, LTXModel], None]
StateHook = Callable[[dict[str, torch.Tensor]], None]
_CPU = torch.device("cpu")


def _block_of(key: str) -> int | None:
    """The block index of a model key, or None for keys outside the blocks."""
    head, _, rest = key.partition(".")
    if head != BLOCKS:
        return None
    return int(rest.partition(".")[0])


def _grouped(file_keys: Iterable[str], sd_ops: SDOps) -> dict[int | None, list[tuple[str, str]]]:
    """(file key, model key) pairs per block index (None: outside the blocks)."""
    groups: dict[int | None, list[tuple[str, str]]] = {}
    for file_key in sorted(file_keys):
        key = sd_ops.apply_to_key(file_key)
        if key is not None:
            groups.setdefault(_block_of(key), []).append((file_key, key))
    return groups


def _read(f: object, pairs: list[tuple[str, str]], sd_ops: SDOps, device: torch.device,
          dtype: torch.dtype, hooks: Iterable[StateHook]) -> dict[str, torch.Tensor]:
    """The tensors of ``pairs`` on ``device`` in ``dtype`` (model keys), through ``hooks``."""
    out: dict[str, torch.Tensor] = {}
    for file_key, key in pairs:
        tensor = f.get_tensor(file_key)  # type: ignore[attr-defined]
        for name, value in sd_ops.apply_to_key_value(key, tensor):
            out[name] = value.to(device=device, dtype=dtype)
    for hook in hooks:
        hook(out)
    return out


def _meta_model(checkpoint: Path) -> LTXModel:
    config = SafetensorsModelStateDictLoader().metadata(str(checkpoint))
    with torch.device("meta"):
        return LTXModelConfigurator.from_config(config)


def load_transformer(checkpoint: Path, device: torch.device | str, dtype: torch.dtype,
                     quant: str = "none", blocks_on_cpu: int = 0,
                     state_hooks: Iterable[StateHook] = (),
                     on_block: BlockHook | None = None) -> LTXModel:
    """The transformer of ``checkpoint`` on ``device`` in ``dtype``, built block by block.

    ``quant`` ("none", "int8", "fp8") quantizes the base linears of each block as it
    arrives; ``blocks_on_cpu`` keeps the last N blocks on the CPU (block swap moves them to
    the device when they run, see ``model.offload``).
    """
    device = torch.device(device)
    hooks = tuple(state_hooks)
    model = _meta_model(checkpoint)
    blocks = getattr(model, BLOCKS)
    check_blocks_to_swap(blocks_on_cpu, len(blocks))
    first_on_cpu = len(blocks) - blocks_on_cpu
    targets = base_targets(model) if quant != "none" else []
    if targets:
        check_quant_runs(quant, device, dtype)
    sd_ops = LTXV_MODEL_COMFY_RENAMING_MAP
    with safe_open(str(checkpoint), framework="pt", device="cpu") as f:
        groups = _grouped(f.keys(), sd_ops)
        rest = _read(f, groups.get(None, []), sd_ops, device, dtype, hooks)
        model.load_state_dict(rest, strict=False, assign=True)
        quantize_linears(model, quant, [t for t in targets if _block_of(t) is None])
        for index, block in enumerate(blocks):
            prefix = f"{BLOCKS}.{index}."
            # Quantization and fusion run on the device (the same kernels as for resident
            # blocks, so swapped blocks get the same values); plain blocks go straight home.
            home = _CPU if index >= first_on_cpu and not targets and not hooks else device
            state = _read(f, groups.get(index, []), sd_ops, home, dtype, hooks)
            block.load_state_dict({k.removeprefix(prefix): v for k, v in state.items()},
                                  strict=True, assign=True)
            quantize_linears(block, quant, [t.removeprefix(prefix) for t in targets
                                            if t.startswith(prefix)])
            if index >= first_on_cpu:
                block.to(_CPU)
            if on_block is not None:
                on_block(index, model)
    return model
