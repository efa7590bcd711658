"""FSDP: the transformer sharded over the processes (torch's ``fully_shard``, FSDP2), on CUDA
with NCCL and on CPUs with gloo, by the same code.

An accelerate config with ``distributed_type: FSDP`` asks for it (``accelerate launch`` then
sets ``ACCELERATE_USE_FSDP``). accelerate shards only on accelerators, so the sharding is
done here, the same way everywhere: each ``BasicAVTransformerBlock`` is one FSDP unit, the
rest of the model the root unit. Of the config's FSDP keys two are honoured:
``fsdp_sharding_strategy`` (FULL_SHARD: parameters are freed again after the forward;
SHARD_GRAD_OP: kept until the backward; with ``fsdp_version: 2``,
``fsdp_reshard_after_forward``) and ``fsdp_offload_params`` (shards live in CPU memory).
Every process loads the checkpoint itself, so module states need no syncing, and the state
dict is always gathered in full for saving.

Sharded parameters are DTensors: each process holds a slice. Anything that reads or writes
whole weights (the adapter file, the full weights, resumable checkpoints) goes through
``gathered`` and ``distributed_like``; both are collectives, so every process calls them in
the same order, and only the main one keeps the result.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch.distributed.tensor import DTensor, distribute_tensor

from aiprod_recipes.model.offload import BLOCKS

__all__ = [
    "FSDPSettings",
    "distributed_like",
    "fsdp_settings",
    "gathered",
    "gathered_tree",
    "shard",
    "sharded_like",
]

_RESHARD = {"FULL_SHARD": True, "1": True, "SHARD_GRAD_OP": False, "2": False}


class FSDPSettings:
    """What the accelerate config says about sharding (see module doc)."""

    def __init__(self, reshard_after_forward: bool = True, offload_params: bool = False) -> None:
        self.reshard_after_forward = reshard_after_forward
        self.offload_params = offload_params


def fsdp_settings(env: Mapping[str, str] | None = None) -> FSDPSettings | None:
    """The settings of an FSDP launch, or None when FSDP was not asked for."""
    env = os.environ if env is None else env
    if env.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return None
    if env.get("FSDP_VERSION", "1") == "2":
        reshard = env.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower() == "true"
    else:
        strategy = env.get("FSDP_SHARDING_STRATEGY", "FULL_SHARD").upper()
        if strategy not in _RESHARD:
            raise ValueError(f"fsdp_sharding_strategy: {strategy} is not supported here; use "
                             "FULL_SHARD or SHARD_GRAD_OP")
        reshard = _RESHARD[strategy]
    return FSDPSettings(reshard, env.get("FSDP_OFFLOAD_PARAMS", "false").lower() == "true")


def shard(model: torch.nn.Module, device: torch.device, settings: FSDPSettings
          ) -> torch.nn.Module:
    """Shard ``model`` (on ``device``) over every process of the default process group:
    one FSDP unit per transformer block, the root unit for the rest. In place."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard

    world = torch.distributed.get_world_size()
    mesh = init_device_mesh(device.type, (world,))
    offload = (CPUOffloadPolicy(pin_memory=device.type == "cuda") if settings.offload_params
               else OffloadPolicy())
    for block in getattr(model, BLOCKS):
        fully_shard(block, mesh=mesh, reshard_after_forward=settings.reshard_after_forward,
                    offload_policy=offload)
    fully_shard(model, mesh=mesh, reshard_after_forward=settings.reshard_after_forward,
                offload_policy=offload)
    return model


def gathered(tensors: Mapping[str, torch.Tensor], keep: bool = True) -> dict[str, torch.Tensor]:
    """Full CPU copies of ``tensors`` (sharded ones gathered from every process; a
    collective). ``keep`` False: take part in the gathering, return nothing."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        full = tensor.full_tensor() if isinstance(tensor, DTensor) else tensor
        if keep:
            out[name] = full.detach().cpu().clone()
    return out


def gathered_tree(obj: object, keep: bool = True) -> object:
    """``obj`` (an optimizer state dict: nested dicts and lists) with every sharded tensor
    replaced by its full CPU copy (a collective, in the tree's order). ``keep`` False: take
    part in the gathering, keep no copy."""
    if isinstance(obj, DTensor):
        full = obj.full_tensor()
        return full.detach().cpu() if keep else None
    if isinstance(obj, dict):
        return {k: gathered_tree(v, keep) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(gathered_tree(v, keep) for v in obj)
    return obj


def sharded_like(optimizer: torch.optim.Optimizer) -> None:
    """After ``load_state_dict`` of a gathered state: give each sharded parameter's state
    tensors (those of the parameter's shape) its layout again (a collective)."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            if not isinstance(param, DTensor):
                continue
            state = optimizer.state.get(param, {})
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.shape == param.shape:
                    state[key] = distributed_like(value, param)


def distributed_like(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``value`` (a full tensor) laid out like ``like``: this process's slice when ``like``
    is sharded, else ``value`` on ``like``'s device."""
    if isinstance(like, DTensor) and not isinstance(value, DTensor):
        local = value.to(device=like.device_mesh.device_type)
        return distribute_tensor(local, like.device_mesh, like.placements)
    return value.to(like.device)
