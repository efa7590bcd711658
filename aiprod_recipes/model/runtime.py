"""The model runtime every floor above shares: where the base model lives for a spec, which
device and dtype it runs in, loading the components a piece of work needs, and the base
model's fingerprint.

Stages, inference (``sample``, ``decode``) and training all load the model through here, so
a device rule or a dtype rule is decided once. ltx-core is imported only when a component
is loaded, so code that only needs paths or fingerprints starts fast.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiprod_recipes.model.header import checkpoint_fingerprint
from aiprod_recipes.names import BASE, CHECKPOINT_FILE, GEMMA_DIR, stage_dir
from aiprod_recipes.spec import CheckpointModel, Model, Spec

if TYPE_CHECKING:
    import torch

    from aiprod_recipes.model.loader import Components, LoadOptions


@dataclass(frozen=True)
class ModelPaths:
    """Where the base model lives for a given spec."""

    checkpoint: Path
    gemma_dir: Path
    produced_by_stage: bool = False
    """True when the base stage builds it (the tiny recipes), so it is a stage output."""


def model_paths(spec: Spec) -> ModelPaths:
    """The checkpoint and Gemma folder: the user's files, or the tiny model the base stage
    builds (so the default recipe needs no download)."""
    src = spec.model.source
    if isinstance(src, CheckpointModel):
        return ModelPaths(Path(src.path), Path(src.gemma_dir))
    base = stage_dir(BASE)
    return ModelPaths(base / CHECKPOINT_FILE, base / GEMMA_DIR, produced_by_stage=True)


def resolve_device(name: str) -> torch.device:
    """"auto" is CUDA when present, else the CPU; an explicit CUDA device must exist."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"model.device = {name!r} but no CUDA device is available")
    return device


def compute_dtype(model: Model, device: torch.device) -> torch.dtype:
    """bf16 weights compute in float32 on the CPU (fast, exact enough for tiny models)."""
    import torch

    dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32}[model.dtype]
    return torch.float32 if device.type == "cpu" else dtype


def pin_cpu_threads(device: torch.device) -> None:
    """On the CPU, compute with one thread, so results do not depend on the machine.

    torch splits float reductions (matmul sums, gradients, norms) between its threads, and
    the split changes the rounding: the train stage's adapter, and so evaluate's losses and
    samples, came out different with 1 and 2 threads. The thread count follows the core
    count or ``OMP_NUM_THREADS``, which differ between machines and shells, so a fresh clone
    would not rebuild dvc.lock. One thread is the one count every machine can honour.
    GPU work is not affected.
    """
    import torch

    if device.type == "cpu" and torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def load_options(spec: Spec) -> LoadOptions:
    """How the spec places the big components: the quantized base (``quant.base``), the
    blocks block swap keeps on the CPU (``memory.blocks_to_swap``), 8-bit Gemma
    (``text_encoder.load_in_8bit``)."""
    from aiprod_recipes.model.loader import LoadOptions

    return LoadOptions(quant=spec.quant.base, blocks_on_cpu=spec.memory.blocks_to_swap,
                       text_in_8bit=spec.text_encoder.load_in_8bit)


def load_model(model: Model, paths: ModelPaths, want: Iterable[str],
               options: LoadOptions | None = None) -> Components:
    """The wanted components (see ``loader.COMPONENTS``) on the spec's device and dtype,
    placed as ``options`` say (``load_options``; default: as stored, all on the device).

    Model work on the CPU runs with one thread from here on (see ``pin_cpu_threads``).
    """
    from aiprod_recipes.model.loader import load_components

    wanted = set(want)
    device = resolve_device(model.device)
    pin_cpu_threads(device)
    gemma = paths.gemma_dir if "text_encoder" in wanted else None
    return load_components(paths.checkpoint, gemma, wanted, device, compute_dtype(model, device),
                           options)


def model_fingerprint(paths: ModelPaths) -> str:
    """The base checkpoint's fingerprint (header + size), recorded in every item key."""
    return checkpoint_fingerprint(paths.checkpoint)
