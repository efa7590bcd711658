"""Start a LoRA from an existing adapter (``lora.init_from``) instead of a fresh one.

The adapter is a file this package wrote (or one in the same layout and header): a path,
or a Hub repo id ``owner/name[@revision]`` whose ``adapter.safetensors`` is read from the
local Hugging Face cache only (training never downloads; ``huggingface-cli download``
fills the cache first). A path inside the repository is a DVC dependency of the train
stage (``registry``), so a new adapter there reruns training.

Its rank and targets must be the spec's: a LoRA of another shape cannot be continued.
The file holds ``lora_B`` already multiplied by alpha / rank (``training.lora``), so it is
divided by the new run's alpha / rank here: the model starts exactly where the earlier
run's file leaves it, whatever alpha the new run trains with.
"""

from __future__ import annotations

from pathlib import Path

import torch

from aiprod_recipes.names import ADAPTER_FILE
from aiprod_recipes.spec import Lora, init_from_is_path
from aiprod_recipes.training.lora import (
    PEFT_ADAPTER_NAME,
    AdapterMeta,
    key_mismatch,
    lora_layers,
    read_adapter,
)

__all__ = ["InitFromError", "check_shape", "load_into", "resolve"]


class InitFromError(ValueError):
    """``lora.init_from`` cannot be used; the message names the key and the cause."""


def resolve(value: str, cache_dir: Path | None = None) -> Path:
    """The adapter file ``lora.init_from`` names (a Hub id: from the local cache only)."""
    if init_from_is_path(value):
        path = Path(value)
        if not path.is_file():
            raise InitFromError(f"lora.init_from: {value}: no such file")
        return path
    repo, _, revision = value.partition("@")
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        raise InitFromError(f"lora.init_from = {value!r} is a Hub repo id, which needs "
                            "huggingface_hub: pip install 'aiprod-recipes[hub]'") from None
    try:
        return Path(hf_hub_download(repo, ADAPTER_FILE, revision=revision or None,
                                    cache_dir=cache_dir, local_files_only=True))
    except LocalEntryNotFoundError:
        raise InitFromError(
            f"lora.init_from = {value!r}: {ADAPTER_FILE} of {repo} is not in the local Hugging "
            f"Face cache; download it first: huggingface-cli download {repo} {ADAPTER_FILE}"
            + (f" --revision {revision}" if revision else "")) from None


def check_shape(meta: AdapterMeta, lora: Lora, path: Path) -> None:
    """The file's rank and targets are the spec's, or an error naming the keys."""
    problems = []
    if meta.rank != lora.rank:
        problems.append(f"lora.rank = {lora.rank} but {path} has rank {meta.rank}")
    if list(meta.target_modules) != list(lora.target_modules):
        problems.append(f"lora.target_modules = {list(lora.target_modules)} but {path} was "
                        f"trained on {list(meta.target_modules)}")
    if problems:
        raise InitFromError("lora.init_from: " + "; ".join(problems))


@torch.no_grad()
def load_into(model: torch.nn.Module, path: Path, lora: Lora) -> AdapterMeta:
    """Copy the adapter in ``path`` into ``model``'s (freshly added) LoRA layers."""
    tensors, meta = read_adapter(path)
    check_shape(meta, lora, path)
    layers = lora_layers(model)
    mismatch = key_mismatch(tensors, layers)
    if mismatch:
        raise InitFromError(f"lora.init_from: {path} does not fit this model's LoRA layers "
                            f"({mismatch})")
    for name, layer in layers.items():
        scale = layer.scaling[PEFT_ADAPTER_NAME]
        a, b = layer.lora_A[PEFT_ADAPTER_NAME].weight, layer.lora_B[PEFT_ADAPTER_NAME].weight
        a.copy_(tensors[f"{name}.lora_A.weight"].to(a.dtype))
        b.copy_((tensors[f"{name}.lora_B.weight"].float() / scale).to(b.dtype))
    return meta
