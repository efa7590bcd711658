"""Resumable training state without pickle: tensors in safetensors, the rest in JSON.

A checkpoint holds everything a resumed run needs to continue as if it never stopped: the
trainable weights, the optimizer's state (any optimizer: its state_dict is split into
tensors and a JSON skeleton that points at them), the scheduler's counters, every random
state (torch, python, numpy and the sampler generators) and the step.

It is tied to a resume key: a digest of what shapes training (spec sections, base model,
data). A run whose key differs starts fresh instead of silently continuing another run.

Writes are atomic at the folder level: the new state is written to a temporary folder,
then swapped in with renames; a crash at any point leaves the previous checkpoint (or the
new one) complete, never a mix.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from aiprod_recipes.training.sharding import (
    distributed_like,
    gathered,
    gathered_tree,
    sharded_like,
)

__all__ = [
    "Snapshot",
    "capture",
    "load_if_compatible",
    "restore",
    "resume_key",
    "save_checkpoint",
]

FORMAT = "aiprod-recipes/train-state-v2"
_CURRENT = "current"
_OLD = "previous"
_WEIGHTS = "trainable.safetensors"
_TENSORS = "state.safetensors"
_JSON = "state.json"


@dataclass
class Snapshot:
    """A training state in memory (what ``capture`` takes and ``restore`` puts back)."""

    step: int
    resume_key: str
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    generators: dict[str, torch.Tensor]
    rng: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


def resume_key(parts: dict[str, Any]) -> str:
    """sha256 of canonical JSON of ``parts`` (spec sections as builtins, model and data
    hashes): a checkpoint is resumed only by a run with the same key."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


# ----------------------------------------------------------------------------- capture/restore

def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state(legacy=False)
    np_state["state"]["key"] = np_state["state"]["key"].tolist()
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np_state}


def _set_rng_state(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = dict(rng["numpy"])
    np_state["state"] = {**np_state["state"],
                         "key": np.asarray(np_state["state"]["key"], dtype=np.uint32)}
    np.random.set_state(np_state)


def capture(
    step: int,
    key: str,
    params: dict[str, torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generators: dict[str, torch.Generator],
    extra: dict[str, Any] | None = None,
    keep: bool = True,
) -> Snapshot | None:
    """Copy the live training state (weights detached to CPU).

    Sharded (FSDP) weights and optimizer states are gathered in full, so every process
    must call this, in step; the snapshot is the same whatever the process count. Only the
    process that writes it keeps it (``keep``): the others take part in the gathering and
    get None, holding no copy of the weights.
    """
    weights = gathered(params, keep)
    optimizer_state = gathered_tree(optimizer.state_dict(), keep)
    if not keep:
        return None
    return Snapshot(
        step=step,
        resume_key=key,
        weights=weights,
        optimizer=optimizer_state,  # type: ignore[arg-type]
        scheduler=scheduler.state_dict(),
        generators={k: g.get_state() for k, g in generators.items()},
        rng=_rng_state(),
        extra=dict(extra or {}),
    )


def restore(
    snap: Snapshot,
    params: dict[str, torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generators: dict[str, torch.Generator],
) -> None:
    """Put a snapshot back into freshly built training objects (sharded ones get their
    slice: every process calls this)."""
    if set(snap.weights) != set(params):
        missing = sorted(set(params) - set(snap.weights))[:3]
        raise ValueError(f"checkpoint weights do not match the trainable parameters ({missing})")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(distributed_like(snap.weights[name].to(param.dtype), param))
    optimizer.load_state_dict(snap.optimizer)
    sharded_like(optimizer)
    scheduler.load_state_dict(snap.scheduler)
    for name, gen in generators.items():
        gen.set_state(snap.generators[name])
    _set_rng_state(snap.rng)


# ----------------------------------------------------------------------------- (de)serialise

def _split(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON skeleton of ``obj`` with every tensor moved to ``tensors`` under a path key."""
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": path}
    if isinstance(obj, dict):
        return {"__dict__": [[k, _split(v, f"{path}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        kind = "__tuple__" if isinstance(obj, tuple) else "__list__"
        return {kind: [_split(v, f"{path}.{i}", tensors) for i, v in enumerate(obj)]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"{path}: cannot store a {type(obj).__name__} without pickle")


def _join(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {k: _join(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_join(v, tensors) for v in obj["__tuple__"])
        if "__list__" in obj:
            return [_join(v, tensors) for v in obj["__list__"]]
    return obj


def _write_folder(folder: Path, snap: Snapshot) -> None:
    tensors: dict[str, torch.Tensor] = {}
    skeleton = {
        "format": FORMAT,
        "step": snap.step,
        "resume_key": snap.resume_key,
        "optimizer": _split(snap.optimizer, "optimizer", tensors),
        "scheduler": _split(snap.scheduler, "scheduler", tensors),
        "generators": _split(snap.generators, "generators", tensors),
        "rng": _split(snap.rng, "rng", tensors),
        "extra": _split(snap.extra, "extra", tensors),
    }
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in snap.weights.items()}, str(folder / _WEIGHTS))
    save_file(tensors, str(folder / _TENSORS))
    (folder / _JSON).write_text(json.dumps(skeleton, sort_keys=True) + "\n")


def save_checkpoint(root: Path, snap: Snapshot) -> Path:
    """Write ``snap`` under ``root`` atomically; return the checkpoint folder."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    _write_folder(tmp, snap)
    current, old = root / _CURRENT, root / _OLD
    if old.exists():
        shutil.rmtree(old)
    if current.exists():
        os.replace(current, old)
    os.replace(tmp, current)
    if old.exists():
        shutil.rmtree(old)
    return current


def _read_folder(folder: Path) -> Snapshot:
    skeleton = json.loads((folder / _JSON).read_text())
    if skeleton.get("format") != FORMAT:
        raise ValueError(f"{folder}: unknown checkpoint format {skeleton.get('format')!r}")
    tensors = load_file(str(folder / _TENSORS))
    return Snapshot(
        step=int(skeleton["step"]),
        resume_key=skeleton["resume_key"],
        weights=load_file(str(folder / _WEIGHTS)),
        optimizer=_join(skeleton["optimizer"], tensors),
        scheduler=_join(skeleton["scheduler"], tensors),
        generators=_join(skeleton["generators"], tensors),
        rng=_join(skeleton["rng"], tensors),
        extra=_join(skeleton["extra"], tensors),
    )


def load_if_compatible(root: Path, key: str) -> Snapshot | None:
    """The checkpoint under ``root`` if it was written with resume key ``key``; else None.

    None too when there is no checkpoint. A crash between the two renames of a save leaves
    only the previous folder, which is then used.
    """
    root = Path(root)
    for name in (_CURRENT, _OLD):
        folder = root / name
        if (folder / _JSON).is_file():
            meta = json.loads((folder / _JSON).read_text())
            if meta.get("resume_key") != key:
                return None
            return _read_folder(folder)
    return None
