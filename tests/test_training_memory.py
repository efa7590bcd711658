"""Block swap and torch.compile through the training loop: the same steps as without them.

Compilation is tested with the "aot_eager" backend (AOTAutograd's graphs run eagerly: no
compiler toolchain needed, the same tracing and partitioning as inductor) and with inductor
itself. The first compilation in a process costs a minute on a small CPU, so those tests
are marked slow; the default suite checks what compiling changes about the model.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from aiprod_recipes.training.loop import run, setup
from aiprod_recipes.training.lora import adapter_state
from tests.test_training_fixtures import (  # noqa: F401
    STRATEGIES,
    batch_for,
    fresh_model,
    one_thread,
    sections,
)


def _train(steps: int = 3, backend: str = "aot_eager", **kw: object
           ) -> tuple[list[float], dict[str, torch.Tensor], object]:
    model, processor = fresh_model()
    state = setup(model, processor, sections(STRATEGIES["text_to_video"], steps=steps, **kw),
                  "fp", compile_backend=backend)
    batch = batch_for("text_to_video")
    losses: list[float] = []
    run(state, lambda i: batch, log=lambda step, m: losses.append(m["loss"]))
    return losses, adapter_state(state.model, torch.float32), state


@pytest.mark.parametrize("checkpointing", [False, True])
def test_block_swap_trains_the_same_adapter(checkpointing: bool) -> None:
    losses, adapter, _ = _train(gradient_checkpointing=checkpointing)
    swapped_losses, swapped, state = _train(gradient_checkpointing=checkpointing,
                                            blocks_to_swap=1)
    assert state.swap is not None and list(state.swap.swapped) == [1]
    assert swapped_losses == losses
    assert adapter and swapped.keys() == adapter.keys()
    assert all(torch.equal(adapter[k], swapped[k]) for k in adapter)


def test_compiling_keeps_the_model_and_its_names() -> None:
    """Only each block's forward is replaced (lazily: nothing is traced until it runs), so
    parameter names, hooks and the adapter keys stay those of the eager model."""
    model, processor = fresh_model()
    state = setup(model, processor, sections(STRATEGIES["text_to_video"], compile=True), "fp",
                  compile_backend="aot_eager")
    names = [n for n, _ in fresh_model()[0].named_parameters()]
    assert [n.replace(".base_layer", "") for n, _ in state.model.named_parameters()
            if "lora_" not in n] == names
    for block in state.model.transformer_blocks:
        assert block.forward._torchdynamo_orig_callable.__self__ is block


@pytest.mark.slow
def test_compiled_blocks_train_within_tolerance() -> None:
    losses, adapter, _ = _train()
    compiled_losses, compiled, state = _train(compile=True)
    blocks = state.model.transformer_blocks
    assert all(hasattr(b.forward, "_torchdynamo_orig_callable") for b in blocks)
    assert compiled.keys() == adapter.keys()
    assert compiled_losses == pytest.approx(losses, rel=1e-5)
    for key, value in adapter.items():
        assert torch.allclose(compiled[key], value, rtol=1e-4, atol=1e-6), key


@pytest.mark.slow
def test_compile_swap_and_checkpointing_over_an_int8_base() -> None:
    """The low-memory combination: what it trains equals the plain int8 run's."""
    losses, adapter, _ = _train(gradient_checkpointing=True, quant="int8")
    both_losses, both, _ = _train(gradient_checkpointing=True, quant="int8", compile=True,
                                  blocks_to_swap=1)
    assert both_losses == pytest.approx(losses, rel=1e-5)
    assert adapter and both.keys() == adapter.keys()
    for key, value in adapter.items():
        assert torch.allclose(both[key], value, rtol=1e-4, atol=1e-6), key


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                    reason="inductor needs a C compiler")
def test_inductor_compiled_blocks_train_within_tolerance() -> None:
    losses, adapter, _ = _train(steps=2)
    compiled_losses, compiled, _ = _train(steps=2, compile=True, backend="inductor")
    assert compiled_losses == pytest.approx(losses, rel=1e-4)
    assert adapter and compiled.keys() == adapter.keys()
    for key, value in adapter.items():
        assert torch.allclose(compiled[key], value, rtol=1e-3, atol=1e-5), key
