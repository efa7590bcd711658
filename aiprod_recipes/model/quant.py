"""Quantize the frozen base with optimum-quanto (int8 or float8 weights).

Only the base linears are quantized: the peft LoRA layers keep their ``base_layer`` (which
quanto replaces by a ``QLinear``) and their lora_A / lora_B stay float32 and trainable.
The input and output projections, the timestep/AdaLN paths and norms stay in their
loaded dtype: they are tiny, and quantizing them costs quality for no memory.

Two orders give the same model: the loader quantizes each transformer block as it arrives
(``quantize_linears`` on one block, see ``model.streamed``), so a big base never exists in
full precision on the device; ``quantize_base`` quantizes a whole loaded model, before or
after a LoRA is injected (a LoRA layer wraps the ``QLinear`` either way). Weights are
quantized once and frozen (quanto ``freeze``), so the base really is stored in 8 bits.

fp8 weights on a CPU are checked with a one-layer probe: where the kernel is missing the
error says so instead of failing in the first step.
"""

from __future__ import annotations

import fnmatch

import torch
from optimum.quanto import QLinear, freeze, qfloat8, qint8, quantize

from aiprod_recipes.model.errors import ModelSettingError

__all__ = [
    "KEEP_HIGH_PRECISION",
    "QuantUnavailable",
    "base_targets",
    "check_quant_runs",
    "quantize_base",
    "quantize_linears",
    "quantized_linears",
]

KEEP_HIGH_PRECISION: tuple[str, ...] = (
    "*lora_A*", "*lora_B*", "*lora_dropout*",
    "patchify_proj*", "audio_patchify_proj*", "proj_out*", "audio_proj_out*",
    "*adaln_single*", "*caption_projection*",
)

QTYPES = {"int8": qint8, "fp8": qfloat8}


class QuantUnavailable(ModelSettingError):
    """The requested weight type cannot run on this device."""


def _probe(qtype: object, device: torch.device, dtype: torch.dtype) -> None:
    """Quantize and run one small linear forward and backward on ``device``."""
    layer = torch.nn.Sequential(torch.nn.Linear(32, 32)).to(device=device, dtype=dtype)
    quantize(layer, weights=qtype)
    if not isinstance(layer[0], QLinear):
        raise RuntimeError("the probe layer was not quantized")
    freeze(layer)
    x = torch.randn(2, 32, device=device, dtype=dtype, requires_grad=True)
    layer(x).sum().backward()


def _qtype(base: str) -> object:
    if base not in QTYPES:
        raise ValueError(f"quant.base: unknown weight type {base!r}")
    return QTYPES[base]


def check_quant_runs(base: str, device: torch.device, dtype: torch.dtype) -> None:
    """Raise ``QuantUnavailable`` when ``base`` weights cannot run on ``device``."""
    try:
        _probe(_qtype(base), device, dtype)
    except Exception as exc:
        raise QuantUnavailable(
            f"quant.base = {base!r}: optimum-quanto cannot run {base} weights on "
            f"{device.type} ({type(exc).__name__}: {exc}); fp8 needs a CUDA GPU with "
            f"fp8 support, int8 runs anywhere."
        ) from exc


def base_targets(model: torch.nn.Module) -> list[str]:
    """Names of the base linears still to quantize (all linears but the high-precision
    ones and those already quantized)."""
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or isinstance(module, QLinear):
            continue
        if any(fnmatch.fnmatch(name, pat) for pat in KEEP_HIGH_PRECISION):
            continue
        names.append(name)
    return names


def quantize_linears(module: torch.nn.Module, base: str, include: list[str]) -> None:
    """Quantize and freeze the linears of ``module`` named in ``include``, keeping each
    parameter's ``requires_grad``."""
    if not include:
        return
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    quantize(module, weights=_qtype(base), include=include)
    freeze(module)
    for name, param in module.named_parameters():
        param.requires_grad_(name in trainable)
    for layer in module.modules():
        if isinstance(layer, QLinear) and not getattr(layer, "_inputs_aligned", False):
            layer.register_forward_pre_hook(_input_in_weight_dtype)
            layer._inputs_aligned = True


def _input_in_weight_dtype(layer: torch.nn.Module, args: tuple) -> tuple:
    """Hand a quantized linear its input in the dtype its weights dequantize to.

    quanto's int8 kernels take one dtype for activations and scales, but under autocast an
    input can arrive in another (bf16 activations over a float32 base on a CPU, float32
    norms over a bf16 base on a GPU); an unquantized linear would have cast it itself.
    """
    x, *rest = args
    dtype = layer.weight.dtype
    if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype != dtype:
        return (x.to(dtype), *rest)
    return args


def quantize_base(model: torch.nn.Module, base: str) -> torch.nn.Module:
    """Quantize ``model``'s frozen base linears to ``base`` ("int8" or "fp8") in place.

    Call after ``lora.add_lora`` when the base is still in full precision: the LoRA layers
    must already wrap their base linears, so only ``base_layer``s (and untargeted linears)
    are replaced. A base the loader already quantized is left as it is.
    """
    if base == "none":
        return model
    targets = base_targets(model)
    if not targets and quantized_linears(model):
        return model
    first = next(model.parameters())
    dtype = first.dtype if first.is_floating_point() else torch.bfloat16
    check_quant_runs(base, first.device, dtype)
    if not targets:
        raise ValueError("quant.base: no base linear layer to quantize")
    quantize_linears(model, base, targets)
    return model


def quantized_linears(model: torch.nn.Module) -> list[str]:
    """Names of the quantized linears (for reports and tests)."""
    return [n for n, m in model.named_modules() if isinstance(m, QLinear)]
