"""A LoRA over a quantized base (optimum-quanto) trains on the CPU: int8 and fp8."""

from __future__ import annotations

import pytest
import torch
from optimum.quanto import QLinear

from aiprod_recipes.model.quant import quantized_linears
from aiprod_recipes.training.loop import setup, train_step
from aiprod_recipes.training.lora import PEFT_ADAPTER_NAME, lora_layers
from tests.test_training_fixtures import (  # noqa: F401
    STRATEGIES,
    batch_for,
    fresh_model,
    one_thread,
    sections,
)


@pytest.mark.parametrize("base", ["int8", "fp8"])
def test_quantized_base_lora_trains_one_step(base: str) -> None:
    model, processor = fresh_model(torch.bfloat16)
    state = setup(model, processor, sections(STRATEGIES["text_to_video"], quant=base,
                                             lr=1e-2), "fp")
    names = quantized_linears(state.model)
    assert any(n.endswith("attn1.to_q.base_layer") for n in names)
    assert any(n.endswith("ff.net.2") for n in names)
    assert not any("lora_" in n for n in names)
    assert isinstance(state.model.transformer_blocks[0].attn1.to_q.base_layer, QLinear)
    assert all(p.dtype == torch.float32 for p in state.params.values())
    assert all("lora_" in n for n in state.params)

    base_layer = state.model.transformer_blocks[0].attn1.to_q.base_layer
    base_before = base_layer.qweight.dequantize().clone()
    b_before = {n: m.lora_B[PEFT_ADAPTER_NAME].weight.clone()
                for n, m in lora_layers(state.model).items()}
    metrics = train_step(state, [batch_for("text_to_video")])
    assert torch.isfinite(torch.tensor(metrics["loss"]))
    assert metrics["grad_norm"] > 0
    changed = [not torch.equal(m.lora_B[PEFT_ADAPTER_NAME].weight, b_before[n])
               for n, m in lora_layers(state.model).items()]
    assert all(changed)
    after = base_layer.qweight.dequantize()
    assert torch.equal(after, base_before)


def test_int8_base_under_bf16_autocast_on_a_float32_model() -> None:
    """The low-VRAM preset's settings on a CPU: the model computes in float32 while autocast
    makes bf16 activations; the quantized linears take their input in their own dtype."""
    model, processor = fresh_model(torch.float32)
    state = setup(model, processor, sections(STRATEGIES["text_to_video"], quant="int8",
                                             mixed_precision="bf16"), "fp")
    metrics = train_step(state, [batch_for("text_to_video")])
    assert torch.isfinite(torch.tensor(metrics["loss"])) and metrics["grad_norm"] > 0
