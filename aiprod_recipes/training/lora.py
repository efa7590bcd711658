"""LoRA adapters on the LTX-2 transformer (peft), the full fine-tune alternative, and the
adapter file: ComfyUI key layout with its metadata in the safetensors header. peft is
imported where a LoRA is built or read from a model, so reading and writing the files
(``push``, ``merge``) starts fast.

File layout: ``diffusion_model.<module>.lora_A.weight`` [r, in] and ``...lora_B.weight``
[out, r]. ComfyUI reads this directly; ltx-core reads it through
``LTXV_LORA_COMFY_RENAMING_MAP`` (strips ``diffusion_model.``) and fuses
``W + strength * B @ A`` in ``apply_loras``. That fusion has no alpha: it assumes
alpha = rank. peft scales the update by alpha / rank, so ``lora_B`` is saved already
multiplied by alpha / rank; every reader then gets the trained model at strength 1. The
header keeps the trained alpha for the record and says the scale is baked in.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import safe_open

from aiprod_recipes.spec import Lora

if TYPE_CHECKING:
    from peft.tuners.lora import LoraLayer

__all__ = [
    "COMFY_PREFIX",
    "FULL_FORMAT",
    "FULL_PREFIX",
    "PEFT_ADAPTER_NAME",
    "AdapterMeta",
    "adapter_state",
    "add_lora",
    "attach_adapter",
    "key_mismatch",
    "load_full_weights",
    "lora_layers",
    "make_full_trainable",
    "read_adapter",
    "safetensors_bytes",
    "save_adapter",
    "save_full_weights",
    "trainable_parameters",
    "weights_format",
]

PEFT_ADAPTER_NAME = "default"
"""The name peft gives the adapter it injects (one adapter per model here)."""
COMFY_PREFIX = "diffusion_model."
FULL_PREFIX = "model.diffusion_model."
FORMAT = "aiprod-recipes/lora-v1"
FULL_FORMAT = "aiprod-recipes/full-v1"
"""The header format of fully fine-tuned transformer weights (``save_full_weights``)."""


@dataclass(frozen=True)
class AdapterMeta:
    """What an adapter file says about itself (all of it lands in the header as strings)."""

    rank: int
    alpha: float
    target_modules: tuple[str, ...]
    strategy: str
    base_fingerprint: str
    spec_hash: str

    def header(self) -> dict[str, str]:
        return {
            "format": FORMAT,
            "rank": str(self.rank),
            "alpha": repr(float(self.alpha)),
            "alpha_baked_into_lora_B": "true",
            "target_modules": json.dumps(list(self.target_modules)),
            "strategy": self.strategy,
            "base_model_fingerprint": self.base_fingerprint,
            "spec_hash": self.spec_hash,
        }

    @staticmethod
    def from_header(header: dict[str, str]) -> AdapterMeta:
        if header.get("format") != FORMAT:
            raise ValueError(
                f"not an adapter written by this package (format={header.get('format')!r})")
        return AdapterMeta(
            rank=int(header["rank"]),
            alpha=float(header["alpha"]),
            target_modules=tuple(json.loads(header["target_modules"])),
            strategy=header["strategy"],
            base_fingerprint=header["base_model_fingerprint"],
            spec_hash=header["spec_hash"],
        )


def add_lora(model: torch.nn.Module, lora: Lora, seed: int) -> torch.nn.Module:
    """Wrap ``model``'s target linears with trainable LoRA layers in place; freeze the rest.

    LoRA weights are kept in float32 whatever the base dtype (bf16 Adam updates on a
    rank-16 matrix round away). lora_A's random init comes from ``seed`` under a forked
    RNG, so the adapter's start does not depend on what ran before.
    """
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias="none",
    )
    model.requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inject_adapter_in_model(config, model, adapter_name=PEFT_ADAPTER_NAME)
    layers = lora_layers(model)
    if not layers:
        raise ValueError(f"lora.target_modules {list(lora.target_modules)} match no module")
    for layer in layers.values():
        for part in (layer.lora_A[PEFT_ADAPTER_NAME], layer.lora_B[PEFT_ADAPTER_NAME]):
            part.float().requires_grad_(True)
    return model


def make_full_trainable(model: torch.nn.Module) -> torch.nn.Module:
    """Full fine-tune: every transformer parameter trains (in the dtype it was loaded in)."""
    return model.requires_grad_(True)


def trainable_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """Name -> parameter for everything that trains, in module order (the optimizer's)."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def lora_layers(model: torch.nn.Module) -> dict[str, LoraLayer]:
    """Module name -> peft LoRA layer, in module order."""
    from peft.tuners.lora import LoraLayer

    return {n: m for n, m in model.named_modules() if isinstance(m, LoraLayer)}


def _lora_weight(layer: LoraLayer, name: str, part: str,
                 weights: dict[str, torch.Tensor] | None) -> torch.Tensor:
    """A LoRA factor: from ``weights`` (full tensors by parameter name) when given, else
    from the module itself."""
    if weights is not None:
        return weights[f"{name}.lora_{part}.{PEFT_ADAPTER_NAME}.weight"]
    return getattr(layer, f"lora_{part}")[PEFT_ADAPTER_NAME].weight


def adapter_state(model: torch.nn.Module, dtype: torch.dtype = torch.bfloat16,
                  weights: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The adapter in ComfyUI layout, with lora_B scaled by alpha / rank (see module doc).

    ``weights``: the trainable parameters gathered in full (by parameter name), for a model
    whose parameters are sharded (FSDP); by default the model's own.
    """
    state: dict[str, torch.Tensor] = {}
    for name, layer in lora_layers(model).items():
        a = _lora_weight(layer, name, "A", weights).detach().float()
        b = (_lora_weight(layer, name, "B", weights).detach().float()
             * layer.scaling[PEFT_ADAPTER_NAME])
        state[f"{COMFY_PREFIX}{name}.lora_A.weight"] = a.to(dtype).contiguous().cpu()
        state[f"{COMFY_PREFIX}{name}.lora_B.weight"] = b.to(dtype).contiguous().cpu()
    return state


_DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16",
           torch.float64: "F64", torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8",
           torch.int8: "I8", torch.bool: "BOOL", torch.float8_e4m3fn: "F8_E4M3",
           torch.float8_e5m2: "F8_E5M2"}


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """A safetensors file with a canonical header (sorted keys, tensors in name order).

    safetensors' own writer orders a multi-key ``__metadata__`` by hash, so the same adapter
    would not give the same bytes twice, and DVC would see a new file every run.
    """
    header: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"".join(blobs)


def _write(tensors: dict[str, torch.Tensor], path: Path, header: dict[str, str]) -> Path:
    """Write through a temporary name: a file at ``path`` is always complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(safetensors_bytes(tensors, header))
    os.replace(tmp, path)
    return path


def save_adapter(model: torch.nn.Module, path: Path, meta: AdapterMeta,
                 dtype: torch.dtype = torch.bfloat16,
                 weights: dict[str, torch.Tensor] | None = None) -> Path:
    """Save the LoRA as a ComfyUI/ltx-core loadable safetensors file with ``meta``
    (``weights``: see ``adapter_state``)."""
    return _write(adapter_state(model, dtype, weights), path, meta.header())


def save_full_weights(model: torch.nn.Module, path: Path, header: dict[str, str],
                      state: dict[str, torch.Tensor] | None = None) -> Path:
    """Full fine-tune output: transformer weights under the checkpoint prefix.

    ``header`` should carry the base checkpoint's ``config`` so ltx-core's configurator can
    build the transformer from this file alone. ``state``: the model's state dict gathered
    in full when it is sharded (FSDP); by default ``model.state_dict()``.
    """
    state = model.state_dict() if state is None else state
    tensors = {f"{FULL_PREFIX}{k}": v.detach().contiguous().cpu() for k, v in state.items()}
    return _write(tensors, path, header)


def weights_format(path: Path) -> str:
    """The header's ``format``: an adapter (``FORMAT``), full weights (``FULL_FORMAT``), or
    "" for a file this package did not write (read without loading a tensor)."""
    with safe_open(str(path), framework="pt") as f:
        return (f.metadata() or {}).get("format", "")


def load_full_weights(model: torch.nn.Module, path: Path) -> None:
    """Load fully fine-tuned transformer weights (``save_full_weights``' layout) into
    ``model``, in the dtype it was loaded in."""
    from safetensors.torch import load_file

    state = {k.removeprefix(FULL_PREFIX): v for k, v in load_file(str(path)).items()}
    param = next(model.parameters())
    model.load_state_dict({k: v.to(param.dtype) for k, v in state.items()}, strict=True)


def read_adapter(path: Path) -> tuple[dict[str, torch.Tensor], AdapterMeta]:
    """The adapter's tensors (keys without ``diffusion_model.``) and its metadata."""
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata() or {}
        tensors = {k.removeprefix(COMFY_PREFIX): f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    return tensors, AdapterMeta.from_header(header)


def key_mismatch(tensors: dict[str, torch.Tensor], layers: dict[str, LoraLayer]) -> str:
    """What differs between an adapter file's keys and a model's LoRA layers ("" if none)."""
    expected = {f"{n}.lora_{p}.weight" for n in layers for p in "AB"}
    if set(tensors) == expected:
        return ""
    missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    return f"missing {missing[:3]}, unexpected {extra[:3]}"


def attach_adapter(model: torch.nn.Module, path: Path, strength: float = 1.0) -> AdapterMeta:
    """Load an adapter file onto ``model`` as an unfused peft LoRA (for our own sampler).

    The file's lora_B already holds alpha / rank, so the layers are built with
    alpha = rank (scale 1) and ``strength`` multiplies on top.
    """
    from peft import LoraConfig, inject_adapter_in_model

    tensors, meta = read_adapter(path)
    config = LoraConfig(r=meta.rank, lora_alpha=meta.rank,
                        target_modules=list(meta.target_modules), bias="none")
    inject_adapter_in_model(config, model, adapter_name=PEFT_ADAPTER_NAME)
    layers = lora_layers(model)
    mismatch = key_mismatch(tensors, layers)
    if mismatch:
        raise ValueError(f"{path}: adapter keys do not match the model ({mismatch})")
    with torch.no_grad():
        for name, layer in layers.items():
            for part, module in (("A", layer.lora_A[PEFT_ADAPTER_NAME]),
                                 ("B", layer.lora_B[PEFT_ADAPTER_NAME])):
                w = tensors[f"{name}.lora_{part}.weight"]
                module.weight.copy_(w.to(module.weight.dtype))
            layer.scaling[PEFT_ADAPTER_NAME] = float(strength)
    model.requires_grad_(False)
    return meta
