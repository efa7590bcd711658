"""The device memory of a training run, item by item, and the cheapest change that fits.

Resident for the whole run: the frozen transformer weights (8-bit where ``quant.base``
says, less the blocks ``memory.blocks_to_swap`` keeps in CPU memory), the trainable
weights (LoRA adapters in float32, or the whole transformer in a full fine-tune), their
optimizer states (AdamW: two moments at the weight's precision; bitsandbytes' 8-bit AdamW:
two bytes plus block scales per weight, 32-bit moments for tensors under 4096 elements),
and the text connectors the train stage runs on the device. On top, during a step: the
gradients and the larger of the activations (``activations``) and the optimizer's
transient (torch's AdamW works on whole lists of tensors: about one more copy of the
trainable weights). A margin covers the CUDA context, cuBLAS workspaces and the caching
allocator's fragmentation.

Block swap assumption (the loader implements it): a swapped block's frozen weights live in
pinned CPU memory and are copied in before use while the previous block computes, so two
swapped blocks can be on the GPU at once; adapters, gradients and optimizer states stay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from aiprod_recipes.planner.activations import Regime, activation_model
from aiprod_recipes.planner.configs import ModelConfig
from aiprod_recipes.planner.flops import StepFlops, reached_without_audio, step_flops
from aiprod_recipes.planner.params import Inventory
from aiprod_recipes.planner.workload import Workload, largest
from aiprod_recipes.spec import Bucket, Spec

__all__ = ["SWAP_IN_FLIGHT", "Plan", "PlanError", "Suggestion", "estimate", "make_plan"]

GiB = 1 << 30
SWAP_IN_FLIGHT = 2
"""Swapped blocks on the GPU at once: the one computing and the one arriving."""
CUDA_RESERVE = 1 * GiB
"""CUDA context, cuBLAS workspaces: on the card but outside PyTorch's allocator."""
FRAGMENTATION = 0.05
"""Share of allocated memory the caching allocator holds in partly used blocks."""
EIGHT_BIT_MIN = 4096
EIGHT_BIT_BLOCK = 256
DTYPE_BYTES = {"bfloat16": 2, "float32": 4}


class PlanError(ValueError):
    """The spec cannot run on the model at all (a rule that needs the model broke)."""


@dataclass(frozen=True)
class Suggestion:
    """Spec changes (dotted key = value) and the peak they give."""

    changes: tuple[str, ...]
    peak_bytes: int


@dataclass(frozen=True)
class Estimate:
    """The memory of one spec on one model."""

    workload: Workload
    trainable_parameters: int
    breakdown: dict[str, int]
    activations: dict[str, int]
    flops: StepFlops

    @property
    def peak_bytes(self) -> int:
        return sum(self.breakdown.values())

    @property
    def allocated_bytes(self) -> int:
        """What ``torch.cuda.max_memory_allocated`` should read: the peak less the margin."""
        return self.peak_bytes - self.breakdown["margin"]


@dataclass(frozen=True)
class Plan:
    """An estimate, whether it fits ``gpu_bytes``, and what to change if it does not."""

    model: str
    device: str
    gpu_bytes: int
    transformer_parameters: int
    processor_parameters: int
    num_layers: int
    estimate: Estimate
    suggestion: Suggestion | None = None

    @property
    def fits(self) -> bool:
        return self.estimate.peak_bytes <= self.gpu_bytes


def _adam_state_bytes(sizes: list[int], optimizer: str, param_bytes: int) -> int:
    if optimizer == "adamw":
        return 2 * param_bytes * sum(sizes)
    total = 0.0
    for n in sizes:
        total += n * (2 + 2 * 4 / EIGHT_BIT_BLOCK) if n >= EIGHT_BIT_MIN else 8 * n
    return round(total)


def _trainable(spec: Spec, inv: Inventory) -> tuple[dict[str, int], int]:
    """Name -> element count of the trainable tensors, and bytes per element."""
    if spec.train.mode == "full":
        return dict(inv.tensors), DTYPE_BYTES[spec.model.dtype]
    r = spec.lora.rank
    sizes = {}
    for lin in inv.lora_targets(spec.lora.target_modules):
        sizes[f"{lin.name}.lora_A"] = r * lin.in_features
        sizes[f"{lin.name}.lora_B"] = lin.out_features * r
    return sizes, 4


def _updated(spec: Spec, sizes: dict[str, int]) -> list[int]:
    """The trainable tensors a step gives gradients (and so optimizer states) to."""
    if spec.strategy.with_audio:
        return list(sizes.values())
    return [n for name, n in sizes.items() if reached_without_audio(name)]


def check(spec: Spec, inv: Inventory) -> None:
    """Rules that need the model: the spec is fine, the model cannot run it (the loader's
    own check, so a plan refuses what a run would refuse, in the same words)."""
    from aiprod_recipes.model.offload import BlockSwapError, check_blocks_to_swap

    try:
        check_blocks_to_swap(spec.memory.blocks_to_swap, inv.num_layers)
    except BlockSwapError as e:
        raise PlanError(str(e)) from e


def estimate(spec: Spec, config: ModelConfig, inv: Inventory, device: str) -> Estimate:
    """Peak device memory of ``spec``'s training on ``config`` (its largest bucket)."""
    check(spec, inv)
    load = largest(spec)
    dtype = DTYPE_BYTES[spec.model.dtype]
    sizes, param_bytes = _trainable(spec, inv)
    updated = _updated(spec, sizes)
    trainable, with_grads = sum(sizes.values()) * param_bytes, sum(updated) * param_bytes
    lora = spec.train.mode == "lora"
    frozen = inv.weight_bytes(dtype, spec.quant.base) if lora else 0
    block = inv.weight_bytes(dtype, spec.quant.base, blocks=1) if lora else 0
    swapped = spec.memory.blocks_to_swap
    acts = activation_model(config, Regime.from_spec(spec, device))
    activations = {"no_checkpointing": acts.bytes(load, False),
                   "gradient_checkpointing": acts.bytes(load, True)}
    step_acts = activations["gradient_checkpointing" if spec.train.gradient_checkpointing
                            else "no_checkpointing"]
    optimizer_step = with_grads if spec.optim.optimizer == "adamw" else 0
    breakdown = {
        "transformer_weights": frozen,
        "block_swap": -max(0, swapped - SWAP_IN_FLIGHT) * block,
        "trainable_weights": trainable,
        "gradients": with_grads,
        "optimizer_states": _adam_state_bytes(updated, spec.optim.optimizer, param_bytes),
        "text_connectors": inv.processor * dtype,
        # The step's larger transient: the activations, or AdamW's list-wise update.
        "activations": max(step_acts, optimizer_step),
    }
    allocated = sum(breakdown.values())
    breakdown["margin"] = round(FRAGMENTATION * allocated) + (
        CUDA_RESERVE if device == "cuda" else 0)
    targets = inv.lora_targets(spec.lora.target_modules) if lora else ()
    flops = step_flops(inv, load, spec.lora.rank if lora else None, targets,
                       spec.train.gradient_checkpointing,
                       spec.train.gradient_accumulation_steps)
    return Estimate(load, sum(sizes.values()), breakdown, activations, flops)


def _set(spec: Spec, dotted: str, value: object) -> Spec:
    section, key = dotted.split(".")
    part = msgspec.structs.replace(getattr(spec, section), **{key: value})
    return msgspec.structs.replace(spec, **{section: part})


def _shorter_buckets(spec: Spec) -> list[tuple[str, Spec]]:
    """Every bucket cut to at most F frames, for F = 8k + 1 below the longest, longest
    first (resolution kept: the planner does not choose the user's framing)."""
    longest = max(b.frames for b in spec.video.buckets)
    options = []
    for frames in range(longest - 8, 0, -8):
        buckets = []
        for b in spec.video.buckets:
            cut = Bucket(width=b.width, height=b.height, frames=min(b.frames, frames))
            if cut not in buckets:
                buckets.append(cut)
        options.append((f"video.buckets: at most {frames} frames",
                        _set(spec, "video.buckets", buckets)))
    return options


def _fitting_swap(spec: Spec, fits: Callable[[Spec], bool], inv: Inventory
                  ) -> tuple[str, Spec] | None:
    if spec.train.mode != "lora":
        return None
    for n in range(max(spec.memory.blocks_to_swap + 1, SWAP_IN_FLIGHT + 1), inv.num_layers):
        changed = _set(spec, "memory.blocks_to_swap", n)
        if fits(changed):
            return f"memory.blocks_to_swap = {n}", changed
    return None


def _speed_changes(spec: Spec) -> list[tuple[str, Spec]]:
    """Settings that cost speed (or nothing), not results."""
    out = []
    if not spec.train.gradient_checkpointing:
        out.append(("train.gradient_checkpointing = true",
                    _set(spec, "train.gradient_checkpointing", True)))
    if spec.optim.optimizer == "adamw":
        out.append(('optim.optimizer = "adamw8bit"', _set(spec, "optim.optimizer", "adamw8bit")))
    return out


def _numerics_changes(spec: Spec) -> list[tuple[str, Spec]]:
    """Settings that change the numbers the model computes."""
    if spec.train.mode == "lora" and spec.quant.base == "none":
        return [('quant.base = "int8"', _set(spec, "quant.base", "int8"))]
    return []


def suggest(spec: Spec, config: ModelConfig, inv: Inventory, device: str,
            gpu_bytes: int) -> Suggestion | None:
    """The cheapest change that fits; failing any single one, the cheapest set.

    Single changes in order: gradient checkpointing, 8-bit Adam, the fewest swapped blocks
    (these change speed, not results), an int8 base (numerics), the longest buckets that
    fit (data). The set: those settings together, then the fewest swapped blocks or the
    longest buckets on top.
    """
    def peak(s: Spec) -> int:
        return estimate(s, config, inv, device).peak_bytes

    def fits(s: Spec) -> bool:
        return peak(s) <= gpu_bytes

    def search(base: Spec, done: tuple[str, ...], swap: bool = True,
               buckets: bool = True) -> Suggestion | None:
        found = _fitting_swap(base, fits, inv) if swap else None
        if found is not None:
            return Suggestion((*done, found[0]), peak(found[1]))
        for text, shorter in _shorter_buckets(base) if buckets else ():
            if fits(shorter):
                return Suggestion((*done, text), peak(shorter))
        return None

    speed, numerics = _speed_changes(spec), _numerics_changes(spec)
    for text, changed in speed:
        if fits(changed):
            return Suggestion((text,), peak(changed))
    found = search(spec, (), buckets=False)
    for text, changed in numerics if found is None else ():
        if fits(changed):
            return Suggestion((text,), peak(changed))
    found = found or search(spec, (), swap=False)
    if found is not None:
        return found
    combined, done = spec, ()
    for text, changed in (*speed, *numerics):
        combined, done = _apply_like(combined, changed, spec), (*done, text)
        if fits(combined):
            return Suggestion(done, peak(combined))
    return search(combined, done) if done else None


def _apply_like(current: Spec, changed: Spec, base: Spec) -> Spec:
    """Apply to ``current`` the one section in which ``changed`` differs from ``base``."""
    for name in Spec.__struct_fields__:
        if getattr(changed, name) != getattr(base, name):
            current = msgspec.structs.replace(current, **{name: getattr(changed, name)})
    return current


def make_plan(spec: Spec, config: ModelConfig, inv: Inventory, device: str,
              gpu_bytes: int) -> Plan:
    """Everything ``aiprod-recipes plan`` reports."""
    est = estimate(spec, config, inv, device)
    plan = Plan(config.name, device, gpu_bytes, inv.total, inv.processor, inv.num_layers, est)
    if plan.fits:
        return plan
    return Plan(config.name, device, gpu_bytes, inv.total, inv.processor, inv.num_layers, est,
                suggest(spec, config, inv, device, gpu_bytes))
