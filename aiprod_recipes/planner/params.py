"""Parameter counts and weight bytes of a transformer config, built on the meta device.

ltx-core's own configurators build the modules on ``meta``: shapes without storage, so a
19B transformer costs nothing to inspect. From the module tree come the totals, one block's
share (what block swap moves), every linear layer (what LoRA targets, quantization
shrinks, and FLOPs are counted on), and the text connectors the train stage keeps on the
device next to the transformer.

Which linears get LoRA adapters is decided by peft's own matching rule; which are
quantized by the same patterns ``model.quant`` uses.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from aiprod_recipes.planner.configs import ModelConfig

__all__ = ["Inventory", "Linear", "inventory"]

BLOCKS_PREFIX = "transformer_blocks."


@dataclass(frozen=True)
class Linear:
    """One linear layer: its dotted name, widths and whether it has a bias."""

    name: str
    in_features: int
    out_features: int
    bias: bool

    @property
    def weights(self) -> int:
        return self.in_features * self.out_features

    @property
    def local(self) -> str:
        """The name inside its block ("attn1.to_q"), or the full name outside the blocks."""
        if not self.name.startswith(BLOCKS_PREFIX):
            return self.name
        return self.name.split(".", 2)[2]

    @property
    def block(self) -> int | None:
        if not self.name.startswith(BLOCKS_PREFIX):
            return None
        return int(self.name.split(".", 2)[1])


@dataclass(frozen=True)
class Inventory:
    """What the meta-built transformer (and its text connectors) consist of."""

    total: int
    num_layers: int
    block_params: int
    """Parameters of one transformer block (all blocks are alike)."""
    linears: tuple[Linear, ...]
    processor: int
    """Parameters of the text connectors and their input projection."""
    tensors: tuple[tuple[str, int], ...]
    """Name and element count of every parameter tensor (8-bit Adam treats small ones
    apart; a video-only strategy never reaches the audio ones)."""

    def lora_targets(self, target_modules: Iterable[str]) -> tuple[Linear, ...]:
        """The linears peft gives adapters to for ``target_modules``."""
        from peft import LoraConfig
        from peft.tuners.tuners_utils import check_target_module_exists

        config = LoraConfig(r=1, target_modules=list(target_modules))
        return tuple(lin for lin in self.linears if check_target_module_exists(config, lin.name))

    def lora_parameters(self, rank: int, target_modules: Iterable[str]) -> int:
        """Parameters of the adapters: rank x (in + out) per targeted linear."""
        return sum(rank * (lin.in_features + lin.out_features)
                   for lin in self.lora_targets(target_modules))

    def quantized(self) -> tuple[Linear, ...]:
        """The linears ``model.quant`` stores in 8 bits (all but the high-precision ones)."""
        from aiprod_recipes.model.quant import KEEP_HIGH_PRECISION

        return tuple(lin for lin in self.linears
                     if not any(fnmatch.fnmatch(lin.name, p) for p in KEEP_HIGH_PRECISION))

    def weight_bytes(self, dtype_bytes: int, quant: str, blocks: int | None = None) -> int:
        """Bytes of the frozen weights at ``dtype_bytes``, with 8-bit linears when ``quant``
        is "int8" or "fp8" (one byte per weight and a scale per output row, kept at
        ``dtype_bytes``). ``blocks``: only that many transformer blocks, nothing else."""
        total = self.total if blocks is None else blocks * self.block_params
        saved = 0
        if quant != "none":
            lins = self.quantized()
            if blocks is not None:
                lins = tuple(lin for lin in lins if lin.block == 0)
            per = sum(lin.weights * (dtype_bytes - 1) - lin.out_features * dtype_bytes
                      for lin in lins)
            saved = per * (blocks if blocks is not None else 1)
        return total * dtype_bytes - saved


def _count(module: object) -> int:
    return sum(p.numel() for p in module.parameters())  # type: ignore[attr-defined]


def _processor_parameters(config: ModelConfig) -> int:
    import torch
    from ltx_core.text_encoders.gemma import EmbeddingsProcessorConfigurator

    from aiprod_recipes.model.gemma_config import gemma_config_applied, with_text_dims

    with gemma_config_applied(with_text_dims(*config.gemma_text)), torch.device("meta"):
        return _count(EmbeddingsProcessorConfigurator.from_config(config.config))


def inventory(config: ModelConfig) -> Inventory:
    """Build ``config``'s transformer on the meta device and list what it holds."""
    import torch
    from ltx_core.model.transformer.model_configurator import LTXModelConfigurator

    with torch.device("meta"):
        model = LTXModelConfigurator.from_config(config.config)
    linears = tuple(
        Linear(name, m.in_features, m.out_features, m.bias is not None)
        for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)
    )
    blocks = model.transformer_blocks
    return Inventory(
        total=_count(model),
        num_layers=len(blocks),
        block_params=_count(blocks[0]) if len(blocks) else 0,
        linears=linears,
        processor=_processor_parameters(config),
        tensors=tuple((name, p.numel()) for name, p in model.named_parameters()),
    )
