"""The transformer loads block by block: quantized as it arrives (never a full-precision
transformer), the same weights as quantizing after loading, swapped blocks left on the CPU."""

from __future__ import annotations

import pytest
import torch
from ltx_core.loader.single_gpu_model_builder import SingleGPUModelBuilder
from ltx_core.model.transformer.model_configurator import (
    LTXV_MODEL_COMFY_RENAMING_MAP,
    LTXModelConfigurator,
)
from optimum.quanto import QLinear

from aiprod_recipes.model.offload import BlockSwapError
from aiprod_recipes.model.quant import base_targets, quantize_base, quantized_linears
from aiprod_recipes.model.streamed import load_transformer
from aiprod_recipes.spec import Lora
from aiprod_recipes.training.lora import add_lora, trainable_parameters
from tests.model_fixtures import tiny_model_paths

DTYPE = torch.bfloat16


def _builder_transformer() -> torch.nn.Module:
    """The transformer as ltx-core's own builder loads it (the whole model at once)."""
    builder = SingleGPUModelBuilder(model_class_configurator=LTXModelConfigurator,
                                    model_path=str(tiny_model_paths().checkpoint),
                                    model_sd_ops=LTXV_MODEL_COMFY_RENAMING_MAP)
    return builder.build(device=torch.device("cpu"), dtype=DTYPE)


def _float_linear_bytes(block: torch.nn.Module) -> int:
    """Bytes of full-precision linear weights materialised in ``block``."""
    return sum(m.weight.nbytes for m in block.modules()
               if type(m) is torch.nn.Linear and not m.weight.is_meta)


def _equal_states(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert torch.equal(sa[key], sb[key]), key


def test_plain_loading_matches_ltx_core_builder() -> None:
    streamed = load_transformer(tiny_model_paths().checkpoint, "cpu", DTYPE)
    _equal_states(streamed, _builder_transformer())


@pytest.mark.parametrize("base", ["int8", "fp8"])
def test_quantized_loading_never_materialises_a_full_precision_transformer(base: str) -> None:
    seen: list[int] = []

    def arrived(index: int, model: torch.nn.Module) -> None:
        blocks = model.transformer_blocks
        for later in blocks[index + 1:]:
            assert all(p.is_meta for p in later.parameters()), "a later block was loaded"
        for done in blocks[: index + 1]:
            assert _float_linear_bytes(done) == 0, "a loaded block kept float linears"
            assert not base_targets(done)
            assert isinstance(done.attn1.to_q, QLinear) and isinstance(done.ff.net[2], QLinear)
            assert done.attn1.to_q.weight._data.dtype in (torch.int8, torch.float8_e4m3fn)
        seen.append(index)

    model = load_transformer(tiny_model_paths().checkpoint, "cpu", DTYPE, base,
                             on_block=arrived)
    assert seen == list(range(len(model.transformer_blocks)))

    after = quantize_base(_builder_transformer(), base)
    assert quantized_linears(model) == quantized_linears(after)
    _equal_states(model, after)


def test_lora_over_a_base_quantized_while_loading_is_the_same_model() -> None:
    """Training injects the LoRA then quantizes; with a base quantized while loading the
    LoRA wraps the QLinear directly. Same modules, same trainable weights, same base."""
    lora = Lora(rank=4, alpha=4.0)
    later = add_lora(_builder_transformer(), lora, seed=3)
    quantize_base(later, "int8")
    early = add_lora(load_transformer(tiny_model_paths().checkpoint, "cpu", DTYPE, "int8"),
                     lora, seed=3)
    assert quantize_base(early, "int8") is early

    kinds = {n: type(m) for n, m in later.named_modules()}
    assert kinds == {n: type(m) for n, m in early.named_modules()}
    assert isinstance(early.transformer_blocks[0].attn1.to_q.base_layer, QLinear)
    trainable_later, trainable_early = trainable_parameters(later), trainable_parameters(early)
    assert list(trainable_later) == list(trainable_early)
    for name, param in trainable_later.items():
        assert param.dtype == torch.float32
        assert torch.equal(param, trainable_early[name]), name
    _equal_states(early, later)


def test_swapped_blocks_never_reach_the_device() -> None:
    """On the meta "device", whatever would go to the GPU stays meta: only the kept blocks
    hold data, on the CPU."""
    model = load_transformer(tiny_model_paths().checkpoint, "meta", DTYPE, blocks_on_cpu=1)
    first, last = model.transformer_blocks
    assert all(p.is_meta for p in first.parameters())
    assert all(p.device.type == "cpu" for p in last.parameters())
    assert all(p.is_meta for p in model.patchify_proj.parameters())
    reference = _builder_transformer().transformer_blocks[1]
    _equal_states(last, reference)


def test_state_hooks_see_each_group_before_it_loads() -> None:
    groups: list[set[str]] = []

    def hook(state: dict[str, torch.Tensor]) -> None:
        groups.append({k.split(".")[0] + ("." + k.split(".")[1]
                                          if k.startswith("transformer_blocks") else "")
                       for k in state})
        key = "transformer_blocks.1.attn1.to_q.weight"
        if key in state:
            state[key] = torch.zeros_like(state[key])

    model = load_transformer(tiny_model_paths().checkpoint, "cpu", DTYPE, state_hooks=[hook])
    assert groups[1:] == [{"transformer_blocks.0"}, {"transformer_blocks.1"}]
    assert not any(g.startswith("transformer_blocks") for g in groups[0])
    assert not model.transformer_blocks[1].attn1.to_q.weight.any()
    assert model.transformer_blocks[0].attn1.to_q.weight.any()


@pytest.mark.parametrize("count", [2, 5])
def test_too_many_blocks_to_swap_is_an_error_naming_the_key(count: int) -> None:
    with pytest.raises(BlockSwapError, match=r"memory\.blocks_to_swap = .*2 blocks"):
        load_transformer(tiny_model_paths().checkpoint, "cpu", DTYPE, blocks_on_cpu=count)


def test_quantize_base_leaves_an_already_quantized_base_alone() -> None:
    model = load_transformer(tiny_model_paths().checkpoint, "cpu", DTYPE, "int8")
    before = {n: (m, getattr(m, "weight", None)) for n, m in model.named_modules()}
    quantize_base(model, "int8")
    after = {n: (m, getattr(m, "weight", None)) for n, m in model.named_modules()}
    assert after.keys() == before.keys()
    assert all(after[n][0] is m and after[n][1] is w for n, (m, w) in before.items())
