"""Gemma in 8 bit (bitsandbytes LLM.int8), for ``text_encoder.load_in_8bit``.

Gemma-3 12B is 24 GB in bf16: on a 24-32 GB card it does not fit next to anything else.
Its language model's linears become ``bnb.nn.Linear8bitLt`` layers holding the loaded
weights as ``Int8Params``; bitsandbytes quantizes them when they move to the GPU, so the
full-precision copy only ever exists in CPU memory. The vision tower (unused for text) and
the output head stay as they are. LLM.int8 runs on CUDA only: any other device is a clean
error naming the key.
"""

from __future__ import annotations

import torch

from aiprod_recipes.model.errors import ModelSettingError

__all__ = ["Text8bitUnavailable", "check_8bit_device", "to_8bit_linears"]

_QUANTIZED = "language_model."
_KEEP = ("lm_head",)
OUTLIER_THRESHOLD = 6.0
"""LLM.int8's outlier threshold: activations above it run in 16 bit (the paper's value)."""


class Text8bitUnavailable(ModelSettingError):
    """8-bit Gemma was asked for on a device bitsandbytes cannot run it on."""


def check_8bit_device(device: torch.device) -> None:
    if device.type != "cuda" or not torch.cuda.is_available():
        raise Text8bitUnavailable(
            f"text_encoder.load_in_8bit = true needs a CUDA GPU (bitsandbytes LLM.int8); "
            f"this run's device is {device.type}: set it to false")


def to_8bit_linears(module: torch.nn.Module) -> list[str]:
    """Replace the language model's linears by 8-bit layers holding the same weights (still
    on their device; they are quantized when moved to a GPU). Returns the replaced names."""
    import bitsandbytes as bnb

    names = [n for n, m in module.named_modules()
             if type(m) is torch.nn.Linear and _QUANTIZED in n
             and not any(k in n for k in _KEEP)]
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name)
        linear = getattr(parent, child)
        layer = bnb.nn.Linear8bitLt(linear.in_features, linear.out_features,
                                    bias=linear.bias is not None, has_fp16_weights=False,
                                    threshold=OUTLIER_THRESHOLD, device="meta")
        layer.weight = bnb.nn.Int8Params(linear.weight.data, requires_grad=False,
                                         has_fp16_weights=False)
        if linear.bias is not None:
            layer.bias = torch.nn.Parameter(linear.bias.data, requires_grad=False)
        setattr(parent, child, layer)
    return names
