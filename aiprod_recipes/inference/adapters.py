"""Adapter files on a transformer: attach (unfused, switchable), fuse (any number, each
with its strength) into a loaded model or while it loads, and ``PATH[:STRENGTH]`` arguments.

Files are the ComfyUI-layout LoRAs that ``training.lora`` writes, with alpha / rank baked
into lora_B, so a fused update is ``strength * B @ A``, the same sum ltx-core's
``apply_loras`` computes (done here in float32 so it works on any base dtype).

``FuseWhileLoading`` adds the update to each weight as the loader reads it, before the
base is quantized (a quantized weight cannot take an update) and before a swapped block
goes to the CPU, so ``sample`` gives the same model whatever ``quant`` and ``memory`` say
about where the weights live.
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
    "FullWeightsWhileLoading",
    "FuseWhileLoading",
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


def _targets(tensors: dict[str, torch.Tensor]) -> list[str]:
    return sorted(k.removesuffix(".lora_A.weight") for k in tensors
                  if k.endswith(".lora_A.weight"))


def _not_linear(path: Path, missing: list[str]) -> ValueError:
    return ValueError(f"{path}: {len(missing)} adapter target(s) are not linear layers of "
                      f"this model, e.g. {missing[:3]}")


def _fused(weight: torch.Tensor, tensors: dict[str, torch.Tensor], prefix: str,
           strength: float) -> torch.Tensor:
    """``weight + strength * B @ A`` in float32, back in the weight's dtype."""
    a = tensors[f"{prefix}.lora_A.weight"].to(weight.device, torch.float32)
    b = tensors[f"{prefix}.lora_B.weight"].to(weight.device, torch.float32)
    return (weight.float() + strength * (b @ a)).to(weight.dtype)


@torch.no_grad()
def fuse_adapter(model: torch.nn.Module, path: Path, strength: float = 1.0) -> AdapterMeta:
    """Add ``strength * B @ A`` of every LoRA pair in the file into the model's weights."""
    tensors, meta = read_adapter(Path(path))
    modules = dict(model.named_modules())
    prefixes = _targets(tensors)
    missing = [p for p in prefixes if not isinstance(modules.get(p), torch.nn.Linear)]
    if missing:
        raise _not_linear(Path(path), missing)
    for prefix in prefixes:
        weight = modules[prefix].weight
        weight.copy_(_fused(weight, tensors, prefix, strength))
    return meta


class FuseWhileLoading:
    """A loader state hook (``LoadOptions.state_hooks``) that fuses one adapter file.

    Called with each group of tensors the loader reads (model keys); ``check_used`` after
    loading says whether every target of the file was found.
    """

    def __init__(self, path: Path, strength: float = 1.0) -> None:
        self.path, self.strength = Path(path), strength
        self.tensors, self.meta = read_adapter(self.path)
        self.pending = set(_targets(self.tensors))

    @torch.no_grad()
    def __call__(self, state: dict[str, torch.Tensor]) -> None:
        for prefix in sorted(self.pending):
            weight = state.get(f"{prefix}.weight")
            if weight is None:
                continue
            if weight.ndim != 2:
                raise _not_linear(self.path, [prefix])
            state[f"{prefix}.weight"] = _fused(weight, self.tensors, prefix, self.strength)
            self.pending.discard(prefix)

    def check_used(self) -> None:
        if self.pending:
            raise _not_linear(self.path, sorted(self.pending))


class FullWeightsWhileLoading:
    """A loader state hook that loads fully fine-tuned transformer weights (the train
    stage's ``transformer.safetensors``, ``training.lora.save_full_weights``' layout) in
    place of the base checkpoint's, group by group as the base streams in: the fine-tuned
    model is never in memory twice, and adapters hooked after it fuse on top."""

    def __init__(self, path: Path) -> None:
        from safetensors import safe_open

        from aiprod_recipes.training.lora import FULL_PREFIX

        self.path, self._prefix = Path(path), FULL_PREFIX
        self._file = safe_open(str(self.path), framework="pt")
        self.pending = {k.removeprefix(FULL_PREFIX) for k in self._file.keys()}  # noqa: SIM118

    @torch.no_grad()
    def __call__(self, state: dict[str, torch.Tensor]) -> None:
        for key, value in state.items():
            if key not in self.pending:
                continue  # read from the base file but not a weight of the model
            tensor = self._file.get_tensor(f"{self._prefix}{key}")
            if tensor.shape != value.shape:
                raise ValueError(f"{self.path}: {key} is {list(tensor.shape)}, the base's "
                                 f"{list(value.shape)}")
            state[key] = tensor.to(device=value.device, dtype=value.dtype)
            self.pending.discard(key)

    def check_used(self) -> None:
        if self.pending:
            raise ValueError(f"{self.path}: {len(self.pending)} tensor(s) this transformer "
                             f"does not have, e.g. {sorted(self.pending)[:3]}")
