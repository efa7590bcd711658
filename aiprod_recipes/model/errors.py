"""The one exception type for spec settings the model cannot honour on this machine.

Quantized weights the device has no kernel for, more blocks to swap than the model has,
8-bit Gemma without CUDA: the spec is valid, the combination with this model or device is
not. Each message names the TOML key, and stages turn it into a clean failure instead of a
traceback. Bugs still raise their ordinary exceptions.
"""

from __future__ import annotations


class ModelSettingError(ValueError):
    """A spec setting that this model or device cannot run; the message names the key."""
