"""The LoRA file: ComfyUI layout, header metadata, and ltx-core's fusion reproducing the
trained (peft) model for alpha = rank and alpha != rank."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from ltx_core.loader import LTXV_LORA_COMFY_RENAMING_MAP, SingleGPUModelBuilder
from ltx_core.model.transformer.model_configurator import (
    LTXV_MODEL_COMFY_RENAMING_MAP,
    LTXModelConfigurator,
)
from safetensors import safe_open

from aiprod_recipes.spec import Lora
from aiprod_recipes.training.flow import noise_tokens
from aiprod_recipes.training.forward import predict, text_context, tokenize
from aiprod_recipes.training.lora import (
    PEFT_ADAPTER_NAME,
    AdapterMeta,
    add_lora,
    attach_adapter,
    lora_layers,
    read_adapter,
    save_adapter,
)
from tests.model_fixtures import tiny_model_paths
from tests.test_training_fixtures import fresh_model, make_batch, one_thread  # noqa: F401

META = AdapterMeta(rank=4, alpha=8.0, target_modules=("to_q", "to_k", "to_v", "to_out.0"),
                   strategy="text_to_video", base_fingerprint="abc", spec_hash="def")


def _randomize(model: torch.nn.Module, seed: int) -> None:
    """Give lora_B non-zero values so the adapter changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            b = layer.lora_B[PEFT_ADAPTER_NAME].weight
            b.copy_(torch.randn(b.shape, generator=g) * 0.2)


def _outputs(model: torch.nn.Module, processor: torch.nn.Module) -> torch.Tensor:
    batch = make_batch(7)
    tokens = tokenize(batch, with_audio=True)
    context = text_context(processor, batch)
    g = torch.Generator().manual_seed(0)
    video = noise_tokens(tokens.video, torch.tensor([0.6]),
                         torch.zeros(1, 12, dtype=torch.bool), g)
    audio = noise_tokens(tokens.audio, torch.tensor([0.4]),
                         torch.zeros(1, 8, dtype=torch.bool), g)
    with torch.no_grad():
        v, a = predict(model.float(), tokens, context, video, audio)
    return torch.cat([v.flatten(), a.flatten()]).float()


def test_file_layout_and_header(tmp_path: Path) -> None:
    model, _ = fresh_model()
    add_lora(model, Lora(rank=4, alpha=8.0), seed=0)
    path = save_adapter(model, tmp_path / "adapter.safetensors", META)
    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
        header = f.metadata()
    assert all(k.startswith("diffusion_model.transformer_blocks.") for k in keys)
    assert "diffusion_model.transformer_blocks.0.attn1.to_q.lora_A.weight" in keys
    assert "diffusion_model.transformer_blocks.1.audio_attn2.to_out.0.lora_B.weight" in keys
    assert header["rank"] == "4" and float(header["alpha"]) == 8.0
    assert json.loads(header["target_modules"]) == list(META.target_modules)
    assert header["strategy"] == "text_to_video"
    assert header["base_model_fingerprint"] == "abc" and header["spec_hash"] == "def"
    _, meta = read_adapter(path)
    assert meta == META


@pytest.mark.parametrize("alpha", [4.0, 16.0])
def test_ltx_core_fusion_matches_peft(tmp_path: Path, alpha: float) -> None:
    base, processor = fresh_model(torch.bfloat16)
    base_out = _outputs(fresh_model(torch.bfloat16)[0], processor.float())
    add_lora(base, Lora(rank=4, alpha=alpha), seed=0)
    _randomize(base, seed=1)
    peft_out = _outputs(base, processor)
    path = save_adapter(base, tmp_path / "adapter.safetensors",
                        AdapterMeta(4, alpha, META.target_modules, "t2v", "", ""))

    fused = SingleGPUModelBuilder(
        model_class_configurator=LTXModelConfigurator,
        model_path=str(tiny_model_paths().checkpoint),
        model_sd_ops=LTXV_MODEL_COMFY_RENAMING_MAP,
    ).lora(str(path), 1.0, LTXV_LORA_COMFY_RENAMING_MAP).build(
        device=torch.device("cpu"), dtype=torch.bfloat16)
    fused_out = _outputs(fused, processor)

    effect = (peft_out - base_out).norm()
    error = (fused_out - peft_out).norm()
    assert effect > 0.1 * base_out.norm()
    assert error < 0.03 * effect, (float(error), float(effect))


def test_attach_adapter_reproduces_the_trained_model(tmp_path: Path) -> None:
    trained, processor = fresh_model()
    add_lora(trained, Lora(rank=4, alpha=12.0), seed=0)
    _randomize(trained, seed=2)
    path = save_adapter(trained, tmp_path / "a.safetensors", META, dtype=torch.float32)
    expected = _outputs(trained, processor)
    fresh, _ = fresh_model()
    meta = attach_adapter(fresh, path)
    assert meta.rank == 4
    torch.testing.assert_close(_outputs(fresh, processor), expected, rtol=1e-5, atol=1e-5)


def test_unknown_target_modules_fail() -> None:
    model, _ = fresh_model()
    with pytest.raises(ValueError):
        add_lora(model, Lora(target_modules=["no_such_layer"]), seed=0)
