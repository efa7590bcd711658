"""``aiprod-recipes merge``: fold adapters into the base checkpoint, giving one single-file
checkpoint that ltx-core (and ``model.loader``, and ComfyUI) loads like the original.

Every adapted weight becomes ``W + strength * B @ A`` (computed in float32, stored in the
weight's own dtype; lora_B already holds alpha / rank, see ``training.lora``). Every other
tensor and the header's metadata (the ``config`` the configurators build from) are copied
unchanged, plus a ``merged_adapters`` entry that records what was folded in.

The file is streamed: tensors are read, merged and written one at a time in name order, so
a 19B checkpoint never sits in memory whole, and the same inputs give the same bytes.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import safe_open

from aiprod_recipes.inference.adapters import AdapterArg, check_base
from aiprod_recipes.model.header import checkpoint_fingerprint
from aiprod_recipes.provenance import sha256_file
from aiprod_recipes.training.lora import FULL_PREFIX, read_adapter

__all__ = ["MERGED_KEY", "merge"]

MERGED_KEY = "merged_adapters"
"""Header metadata: the adapters folded in (sha256, strength, spec hash), as JSON."""
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
             "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
_MERGEABLE = frozenset({"F64", "F32", "F16", "BF16"})

Pair = tuple[torch.Tensor, torch.Tensor, float]


def _updates(adapters: Sequence[AdapterArg], base_fingerprint: str
             ) -> tuple[dict[str, list[Pair]], list[dict[str, object]]]:
    """Checkpoint weight key -> its (A, B, strength) pairs; and the record of each file."""
    updates: dict[str, list[Pair]] = {}
    record = []
    for arg in adapters:
        tensors, meta = read_adapter(arg.path)
        check_base(meta, base_fingerprint, arg.path, strict=False)
        for key in sorted(k for k in tensors if k.endswith(".lora_A.weight")):
            module = key.removesuffix(".lora_A.weight")
            pair = (tensors[key], tensors[f"{module}.lora_B.weight"], arg.strength)
            updates.setdefault(f"{FULL_PREFIX}{module}.weight", []).append(pair)
        record.append({"sha256": sha256_file(Path(arg.path)), "strength": arg.strength,
                       "spec_hash": meta.spec_hash, "rank": meta.rank})
    return updates, record


def _merged(weight: torch.Tensor, pairs: list[Pair]) -> torch.Tensor:
    total = weight.float()
    for a, b, strength in pairs:
        total = total + strength * (b.float() @ a.float())
    return total.to(weight.dtype)


def _raw(tensor: torch.Tensor) -> bytes:
    t = tensor.detach().contiguous().cpu()
    return t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def merge(checkpoint: Path, adapters: Sequence[AdapterArg], out: Path) -> int:
    """Write ``checkpoint`` with ``adapters`` folded in to ``out``; returns how many weights
    changed. Raises ValueError naming the file and key when an adapter does not fit."""
    if not adapters:
        raise ValueError("merge needs at least one --adapter")
    updates, record = _updates(adapters, checkpoint_fingerprint(checkpoint))
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    with safe_open(str(checkpoint), framework="pt") as f:
        keys = sorted(f.keys())
        slices = {k: f.get_slice(k) for k in keys}
        for key, pairs in updates.items():
            if key not in slices:
                raise ValueError(f"{checkpoint}: no weight {key} for the adapter's "
                                 f"{key.removeprefix(FULL_PREFIX)}")
            dtype, shape = slices[key].get_dtype(), slices[key].get_shape()
            want = [pairs[0][1].shape[0], pairs[0][0].shape[1]]
            if dtype not in _MERGEABLE or list(shape) != want:
                raise ValueError(f"{checkpoint}: {key} is {dtype} {list(shape)}; the adapter "
                                 f"needs a floating-point weight of shape {want}")
        metadata = dict(f.metadata() or {})
        metadata[MERGED_KEY] = json.dumps(record, sort_keys=True)
        header: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))}
        offset = 0
        for key in keys:
            shape = slices[key].get_shape()
            size = _ITEMSIZE[slices[key].get_dtype()] * int(torch.Size(shape).numel())
            header[key] = {"dtype": slices[key].get_dtype(), "shape": list(shape),
                           "data_offsets": [offset, offset + size]}
            offset += size
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(tmp, "wb") as w:
                w.write(struct.pack("<Q", len(raw)) + raw)
                for key in keys:
                    tensor = f.get_tensor(key)
                    w.write(_raw(_merged(tensor, updates[key]) if key in updates else tensor))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    os.replace(tmp, out)
    return len(updates)
