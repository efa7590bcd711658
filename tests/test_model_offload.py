"""Block swap: outputs and gradients are identical with swap on and off (with and without
gradient checkpointing, over a float or a quantized base), the device copies do not outlive
a block's forward, and too many blocks is an error naming the key.

On the CPU the "device" copies are real copies made by the same code (the side-stream path
is CUDA only), so what is fetched, installed, packed and released is what a GPU run does.
"""

from __future__ import annotations

import copy
import functools
import gc
import weakref
from pathlib import Path

import pytest
import torch

from aiprod_recipes.model.loader import load_components
from aiprod_recipes.model.offload import BlockSwap, BlockSwapError, resident_bytes, swap_blocks
from aiprod_recipes.model.quant import quantize_base
from aiprod_recipes.model.tiny import build_tiny_model
from aiprod_recipes.spec import Lora
from aiprod_recipes.training.compile import compile_blocks
from aiprod_recipes.training.flow import noise_tokens
from aiprod_recipes.training.forward import ContextCache, predict, tokenize
from aiprod_recipes.training.lora import add_lora, trainable_parameters
from tests.test_training_fixtures import batch_for

LAYERS = 3


@functools.lru_cache(maxsize=1)
def _three_blocks() -> tuple[torch.nn.Module, torch.nn.Module]:
    import atexit
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="aiprod-swap-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    paths = build_tiny_model(root / "model", seed=1, layers=LAYERS)
    c = load_components(paths.checkpoint, None, {"transformer", "embeddings_processor"},
                        "cpu", torch.float32)
    return c.transformer, c.embeddings_processor


def _inputs() -> tuple:
    _, processor = _three_blocks()
    batch = batch_for("text_to_video")
    tokens = tokenize(batch, with_audio=True)
    context = ContextCache(processor)(batch.text)
    g = torch.Generator().manual_seed(0)
    level = torch.tensor([0.6])
    video = noise_tokens(tokens.video, level, torch.zeros(tokens.video.shape[:2], dtype=bool), g)
    audio = noise_tokens(tokens.audio, level, torch.zeros(tokens.audio.shape[:2], dtype=bool), g)
    return tokens, context, video, audio


def _lora_model(quant: str = "none") -> torch.nn.Module:
    """A LoRA model with non-zero lora_B, so the LoRA path shows in outputs and grads."""
    model = add_lora(copy.deepcopy(_three_blocks()[0]), Lora(rank=4, alpha=4.0), seed=0)
    quantize_base(model, quant)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=g) * 0.1)
    return model


def _forward_backward(model: torch.nn.Module, checkpointing: bool
                      ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    model.set_gradient_checkpointing(checkpointing)
    model.train()
    out = predict(model, *_inputs())
    (out[0].square().mean() + out[1].square().mean()).backward()
    return [o.detach() for o in out], {n: p.grad for n, p in trainable_parameters(model).items()}


@pytest.mark.parametrize("quant", ["none", "int8"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_outputs_and_gradients_are_identical_with_swap(quant: str, checkpointing: bool) -> None:
    out, grads = _forward_backward(_lora_model(quant), checkpointing)
    swapped = _lora_model(quant)
    swap = swap_blocks(swapped, 2)
    out_s, grads_s = _forward_backward(swapped, checkpointing)
    assert all(torch.equal(a, b) for a, b in zip(out, out_s, strict=True))
    assert grads.keys() == grads_s.keys() and len(grads) > 0
    for name, grad in grads.items():
        assert torch.equal(grad, grads_s[name]), name
    assert swap is not None and not swap._installed and not swap._live


@pytest.mark.parametrize(("quant", "compiled"), [
    ("none", False), ("int8", False),
    pytest.param("int8", True, marks=pytest.mark.slow)])
def test_device_copies_die_with_the_forward_and_return_for_backward(
        quant: str, compiled: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without checkpointing, the graph keeps CPU references, not the fetched weights (also
    when the blocks are compiled: AOTAutograd saves through the same hooks)."""
    fetched: list[weakref.ref] = []
    original = BlockSwap._fetch

    def spy(self: BlockSwap, block: int, non_blocking: bool = False) -> list[torch.Tensor]:
        tensors = original(self, block, non_blocking)
        fetched.extend(weakref.ref(t) for t in tensors)
        return tensors

    monkeypatch.setattr(BlockSwap, "_fetch", spy)
    model = _lora_model(quant)
    swap_blocks(model, 2)
    if compiled:
        compile_blocks(model, "aot_eager")
    model.train()
    out = predict(model, *_inputs())
    gc.collect()
    assert fetched and all(r() is None for r in fetched)
    in_forward = len(fetched)
    fetched.clear()
    (out[0].square().mean() + out[1].square().mean()).backward()
    gc.collect()
    assert len(fetched) == in_forward, "backward fetches each swapped block once"
    assert all(r() is None for r in fetched)


def test_inference_is_identical_and_leaves_nothing_installed() -> None:
    model = _lora_model("int8").eval()
    with torch.inference_mode():
        expected = predict(model, *_inputs())
    swap = swap_blocks(model, 1)
    with torch.inference_mode():
        first = predict(model, *_inputs())
        again = predict(model, *_inputs())
    assert all(torch.equal(a, b) and torch.equal(a, c)
               for a, b, c in zip(expected, first, again, strict=True))
    assert swap is not None and not swap._installed


def test_only_frozen_weights_of_swapped_blocks_leave_the_module() -> None:
    model = _lora_model()
    before = {n: p.clone() for n, p in model.state_dict().items()}
    resident = resident_bytes(model)
    trainable = list(trainable_parameters(model))
    swap = swap_blocks(model, 2)
    assert swap is not None and list(swap.swapped) == [1, 2]
    names = {n for n, _ in model.named_parameters()}
    assert not any(n.startswith(("transformer_blocks.1.", "transformer_blocks.2."))
                   and "lora_" not in n for n in names)
    assert any(n.startswith("transformer_blocks.0.attn1.to_q.base_layer") for n in names)
    assert list(trainable_parameters(model)) == trainable
    block = resident_bytes(model.transformer_blocks[0]) - resident_bytes(
        model.transformer_blocks[1])
    assert resident - resident_bytes(model) == 2 * block
    swap.remove()
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], v) for k, v in before.items())


@pytest.mark.parametrize("count", [LAYERS, LAYERS + 4])
def test_too_many_blocks_is_an_error_naming_the_key(count: int) -> None:
    with pytest.raises(BlockSwapError, match=r"memory\.blocks_to_swap"):
        swap_blocks(_lora_model(), count)
    assert swap_blocks(_lora_model(), 0) is None
