"""``aiprod-recipes plan``: parse the request, run the planner, print text or JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from aiprod_recipes.spec import Spec

__all__ = ["DEFAULT_GPU", "BadSize", "gpu_bytes", "parse_size", "plan_for", "render_json",
           "render_text"]

DEFAULT_GPU = "24GiB"
"""The GPU size planned for when none is given and no CUDA device is present."""

_UNITS = {"": 1 << 30, "g": 1 << 30, "gib": 1 << 30, "gb": 10**9, "m": 1 << 20,
          "mib": 1 << 20, "mb": 10**6, "t": 1 << 40, "tib": 1 << 40, "tb": 10**12}


class BadSize(ValueError):
    """A GPU size that cannot be read."""


def parse_size(text: str) -> int:
    """Bytes of "32GiB", "32GB" (10^9), "32G" or "32" (GiB), "24000MiB"..."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in _UNITS:
        raise BadSize(f"--gpu-memory: not a size: {text!r} (e.g. 24GiB, 80GB, 48)")
    return round(float(m.group(1)) * _UNITS[unit])


def gib(n: float) -> str:
    """Bytes in GiB, or MiB below one GiB (the tiny model's figures)."""
    if abs(n) < 1 << 30:
        return f"{n / (1 << 20):.1f} MiB"
    return f"{n / (1 << 30):.1f} GiB"


def _count(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.{2 if unit == 'B' else 1}f} {unit}"
    return str(n)


def plan_device(spec: Spec) -> str:
    """What the run uses: the CPU when the spec says so, else a CUDA GPU."""
    return "cpu" if spec.model.device == "cpu" else "cuda"


def local_gpu_bytes() -> int | None:
    """Total memory of the local CUDA device, if there is one."""
    import torch

    if not torch.cuda.is_available():
        return None
    return int(torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory)


def gpu_bytes(spec: Spec, text: str | None) -> int:
    """The size asked for; else this machine's GPU when the run is for one; else 24 GiB."""
    if text is not None:
        return parse_size(text)
    local = local_gpu_bytes() if plan_device(spec) == "cuda" else None
    return local if local is not None else parse_size(DEFAULT_GPU)


def plan_for(spec: Spec, model: str | None, gpu_bytes: int) -> Any:
    """Plan ``spec`` (on the published ``model`` when given) for a device of ``gpu_bytes``."""
    from aiprod_recipes.planner.configs import load_model_config
    from aiprod_recipes.planner.estimate import make_plan
    from aiprod_recipes.planner.params import inventory

    config = load_model_config(spec, model)
    return make_plan(spec, config, inventory(config), plan_device(spec), gpu_bytes)


def as_dict(plan: Any, spec_path: str | Path) -> dict[str, Any]:
    est = plan.estimate
    load = est.workload
    out: dict[str, Any] = {
        "spec": str(spec_path),
        "model": plan.model,
        "device": plan.device,
        "transformer_blocks": plan.num_layers,
        "transformer_parameters": plan.transformer_parameters,
        "text_connector_parameters": plan.processor_parameters,
        "trainable_parameters": est.trainable_parameters,
        "bucket": {"width": load.bucket.width, "height": load.bucket.height,
                   "frames": load.bucket.frames, "video_tokens": load.video,
                   "reference_tokens": load.reference, "audio_tokens": load.audio,
                   "text_tokens": load.text, "batch_size": load.batch_size},
        "peak_bytes": est.peak_bytes,
        "allocated_bytes": est.allocated_bytes,
        "breakdown": dict(est.breakdown),
        "activations": dict(est.activations),
        "flops_per_step": est.flops.total,
        "recompute_flops_per_step": est.flops.recompute,
        "gpu_bytes": plan.gpu_bytes,
        "fits": plan.fits,
        "suggestion": None,
    }
    if plan.suggestion is not None:
        out["suggestion"] = {"changes": list(plan.suggestion.changes),
                             "peak_bytes": plan.suggestion.peak_bytes}
    return out


def render_json(plan: Any, spec_path: str | Path) -> str:
    return json.dumps(as_dict(plan, spec_path), indent=2)


_LABELS = {
    "transformer_weights": "transformer weights (frozen)",
    "block_swap": "block swap (kept in CPU memory)",
    "trainable_weights": "trainable weights",
    "gradients": "gradients",
    "optimizer_states": "optimizer states",
    "text_connectors": "text connectors",
    "activations": "activations",
    "margin": "margin (allocator, CUDA context)",
}


def render_text(plan: Any, spec_path: str | Path) -> str:
    est = plan.estimate
    acts = est.activations
    lines = [
        f"{spec_path}: {plan.model}, {plan.num_layers} transformer blocks, on {plan.device}",
        f"  transformer parameters  {_count(plan.transformer_parameters)} "
        f"(text connectors {_count(plan.processor_parameters)})",
        f"  trainable parameters    {_count(est.trainable_parameters)}",
        f"  largest bucket          {est.workload.label()}",
        f"  peak device memory      {gib(est.peak_bytes)}",
    ]
    lines += [f"    {_LABELS[k]:34s} {gib(v):>10s}" for k, v in est.breakdown.items()]
    lines += [
        f"  activations             {gib(acts['gradient_checkpointing'])} with gradient "
        f"checkpointing, {gib(acts['no_checkpointing'])} without",
        f"  FLOPs per step          {est.flops.total:.3g}"
        + (f" ({est.flops.recompute:.3g} recomputed)" if est.flops.recompute else ""),
        f"  fits {gib(plan.gpu_bytes)}: {'yes' if plan.fits else 'no'}",
    ]
    if not plan.fits:
        s = plan.suggestion
        lines.append(
            "  cheapest change:        " + ("none found" if s is None else
                                           f"{'; '.join(s.changes)} (peak {gib(s.peak_bytes)})"))
    return "\n".join(lines)
