"""`aiprod-recipes merge` on the tiny model: the merged single-file checkpoint loads through
ltx-core (model.loader) and samples what base + adapter samples, within bf16 rounding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from aiprod_recipes.cli import main
from aiprod_recipes.inference.adapters import AdapterArg
from aiprod_recipes.inference.guidance import Guidance
from aiprod_recipes.inference.merge import MERGED_KEY, merge
from aiprod_recipes.inference.sampler import Request, sample_latents
from aiprod_recipes.model.header import checkpoint_fingerprint
from aiprod_recipes.model.loader import load_components
from aiprod_recipes.model.text import encode_captions
from aiprod_recipes.training.lora import (
    PEFT_ADAPTER_NAME,
    AdapterMeta,
    add_lora,
    attach_adapter,
    lora_layers,
    save_adapter,
)
from tests.model_fixtures import tiny_components, tiny_model  # noqa: F401

TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def make_adapter(checkpoint: Path, path: Path) -> Path:
    model = load_components(checkpoint, None, {"transformer"}, "cpu", torch.float32).transformer
    from aiprod_recipes.spec import Lora

    add_lora(model, Lora(rank=4, alpha=8.0, target_modules=list(TARGETS)), seed=0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            b = layer.lora_B[PEFT_ADAPTER_NAME].weight
            b.copy_(0.05 * torch.randn(b.shape, generator=gen))
    meta = AdapterMeta(rank=4, alpha=8.0, target_modules=TARGETS, strategy="text_to_video",
                       base_fingerprint=checkpoint_fingerprint(checkpoint), spec_hash="t")
    return save_adapter(model, path, meta)


def latents(checkpoint: Path, prompt, adapter: Path | None = None) -> torch.Tensor:
    c = load_components(checkpoint, None, {"transformer", "embeddings_processor"}, "cpu",
                        torch.float32)
    if adapter is not None:
        attach_adapter(c.transformer, adapter)
    request = Request(prompt=prompt, width=32, height=32, frames=9, steps=2, seed=3,
                      guidance=Guidance(cfg_scale=1.0, stg_scale=0.0))
    return sample_latents(c.transformer, c.embeddings_processor, request).video


def test_merged_checkpoint_samples_like_base_plus_adapter(tiny_model, tiny_components,  # noqa: F811
                                                          tmp_path: Path) -> None:
    base = tiny_model.checkpoint
    adapter = make_adapter(base, tmp_path / "adapter.safetensors")
    out = tmp_path / "merged.safetensors"
    with safe_open(str(adapter), "pt") as f:
        pairs = len(list(f.keys())) // 2
    assert merge(base, [AdapterArg(adapter)], out) == pairs
    prompt = encode_captions(tiny_components.text_encoder, tiny_components.embeddings_processor,
                             ["a red ball bounces"], 128)[0]
    adapted, merged, plain = (latents(base, prompt, adapter), latents(out, prompt),
                              latents(base, prompt))
    scale = adapted.abs().max()
    assert (merged - adapted).abs().max() <= 2e-2 * scale
    assert (plain - adapted).abs().max() > 10 * (merged - adapted).abs().max()
    with safe_open(str(base), "pt") as f, safe_open(str(out), "pt") as g:
        assert set(f.keys()) == set(g.keys())
        assert g.metadata()["config"] == f.metadata()["config"]
        assert json.loads(g.metadata()[MERGED_KEY])[0]["strength"] == 1.0
    again = tmp_path / "again.safetensors"
    merge(base, [AdapterArg(adapter)], again)
    assert again.read_bytes() == out.read_bytes()


def test_merge_errors_name_the_file(tiny_model, tmp_path: Path, monkeypatch,  # noqa: F811
                                    capsys) -> None:
    monkeypatch.chdir(tmp_path)
    Path("params.toml").write_text(
        f'[model]\nsource = {{ type = "checkpoint", path = "{tiny_model.checkpoint}", '
        f'gemma_dir = "{tiny_model.gemma_dir}" }}\n')
    assert main(["merge", "--adapter", "missing.safetensors", "--out", "m.safetensors"]) == 1
    assert "missing.safetensors: no such file" in capsys.readouterr().err
    with pytest.raises(ValueError, match="at least one"):
        merge(tiny_model.checkpoint, [], tmp_path / "x.safetensors")
