"""8-bit Gemma: the language model's linears become bitsandbytes 8-bit layers holding the
loaded weights (quantized when they reach a GPU); without CUDA it is a clean error."""

from __future__ import annotations

import pytest
import torch

from aiprod_recipes.model.loader import LoadOptions, load_components
from aiprod_recipes.model.text8bit import Text8bitUnavailable, to_8bit_linears
from tests.model_fixtures import tiny_model_paths


def test_language_model_linears_become_8bit_layers_with_the_same_weights() -> None:
    import bitsandbytes as bnb

    paths = tiny_model_paths()
    module = load_components(paths.checkpoint, paths.gemma_dir, {"text_encoder"}, "cpu",
                             torch.bfloat16).text_encoder
    before = {n: m.weight.detach().clone() for n, m in module.named_modules()
              if isinstance(m, torch.nn.Linear)}
    names = to_8bit_linears(module)
    assert names and all(".language_model." in n for n in names)
    assert {n for n in before if ".language_model." in n} == set(names)
    modules = dict(module.named_modules())
    for name in names:
        layer = modules[name]
        assert isinstance(layer, bnb.nn.Linear8bitLt)
        assert isinstance(layer.weight, bnb.nn.Int8Params) and not layer.weight.requires_grad
        assert torch.equal(layer.weight.data, before[name])
    kept = [n for n in before if n not in names]
    assert any("lm_head" in n for n in kept) and any("vision_tower" in n for n in kept)
    assert all(type(modules[n]) is torch.nn.Linear for n in kept)


def test_8bit_gemma_without_cuda_is_an_error_naming_the_key() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    paths = tiny_model_paths()
    with pytest.raises(Text8bitUnavailable, match=r"text_encoder\.load_in_8bit = true"):
        load_components(paths.checkpoint, paths.gemma_dir, {"text_encoder"}, "cpu",
                        torch.bfloat16, LoadOptions(text_in_8bit=True))
