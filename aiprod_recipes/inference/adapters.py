"""Adapter files on a loaded transformer: attach (unfused, switchable), fuse (any number,
each with its strength), and ``PATH[:STRENGTH]`` arguments.

Files are the ComfyUI-layout LoRAs that ``training.lora`` writes, with alpha / rank baked
into lora_B, so a fused update is ``strength * B @ A``, the same sum ltx-core's
``apply_loras`` computes (done here in float32 so it works on any base dtype).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from aiprod_recipes.training.lora import AdapterMeta, attach_adapter, lora_layers, read_adapter

__all__ = [
    "AdapterArg",
    "adapters_disabled",
    "attach",
    "check_base",
    "fuse_adapter",
    "parse_adapter_arg",
]


@dataclass(frozen=True)
class AdapterArg:
    path: Path
    strength: float = 1.0


def parse_adapter_arg(text: str) -> AdapterArg:
    """``PATH`` or ``PATH:STRENGTH`` (a suffix that is not a number belongs to the path)."""
    head, sep, tail = text.rpartition(":")
    if sep and head:
        try:
            return AdapterArg(Path(head), float(tail))
        except ValueError:
            pass
    return AdapterArg(Path(text), 1.0)


def check_base(meta: AdapterMeta, base_fingerprint: str, path: Path, strict: bool) -> None:
    """An adapter trained on another base is an error (``strict``) or a warning."""
    if meta.base_fingerprint == base_fingerprint:
        return
    message = (f"{path}: adapter was trained on base {meta.base_fingerprint[:12]}, "
               f"this base is {base_fingerprint[:12]}")
    if strict:
        raise ValueError(message)
    print(f"warning: {message}", file=sys.stderr)


def attach(model: torch.nn.Module, path: Path, strength: float = 1.0) -> AdapterMeta:
    """One adapter as switchable (unfused) LoRA layers; see ``adapters_disabled``."""
    return attach_adapter(model, Path(path), strength)


@contextlib.contextmanager
def adapters_disabled(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Run the base model: every attached LoRA layer is off inside the block."""
    layers = list(lora_layers(model).values())
    if not layers:
        raise ValueError("the model has no attached adapter")
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield model
    finally:
        for layer in layers:
            layer.enable_adapters(True)
        model.requires_grad_(False)


@torch.no_grad()
def fuse_adapter(model: torch.nn.Module, path: Path, strength: float = 1.0) -> AdapterMeta:
    """Add ``strength * B @ A`` of every LoRA pair in the file into the model's weights."""
    tensors, meta = read_adapter(Path(path))
    modules = dict(model.named_modules())
    prefixes = sorted(k.removesuffix(".lora_A.weight") for k in tensors
                      if k.endswith(".lora_A.weight"))
    missing = [p for p in prefixes if not isinstance(modules.get(p), torch.nn.Linear)]
    if missing:
        raise ValueError(f"{path}: {len(missing)} adapter target(s) are not linear layers of "
                         f"this model, e.g. {missing[:3]}")
    for prefix in prefixes:
        weight = modules[prefix].weight
        a = tensors[f"{prefix}.lora_A.weight"].to(weight.device, torch.float32)
        b = tensors[f"{prefix}.lora_B.weight"].to(weight.device, torch.float32)
        weight.copy_((weight.float() + strength * (b @ a)).to(weight.dtype))
    return meta
