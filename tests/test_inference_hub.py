"""The Hub upload folder and model card, without the network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from aiprod_recipes.inference import hub
from aiprod_recipes.names import ADAPTER_FILE
from aiprod_recipes.training.lora import AdapterMeta

META = AdapterMeta(rank=16, alpha=32.0, target_modules=("to_q", "to_v"),
                   strategy="image_to_video", base_fingerprint="ab" * 32, spec_hash="1234")


def adapter_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "train"
    folder.mkdir()
    tensors = {"diffusion_model.blocks.0.to_q.lora_A.weight": torch.zeros(16, 4),
               "diffusion_model.blocks.0.to_q.lora_B.weight": torch.zeros(4, 16)}
    save_file(tensors, str(folder / ADAPTER_FILE), metadata=META.header())
    return folder


def test_model_card_text() -> None:
    card = hub.model_card(META, "me/my-lora", "zxq", {"loss_base": 0.5, "loss_adapter": 0.4,
                                                      "improvement": 0.1, "num_val_clips": 3})
    assert card.startswith("---\nbase_model: Lightricks/LTX-2\n")
    assert 'instance_prompt: "zxq"' in card and "# my-lora" in card
    assert "| rank / alpha | 16 / 32" in card and f"`{'ab' * 32}`" in card
    assert "| improvement | 0.1 |" in card and "LoraLoaderModelOnly" in card
    assert "--adapter adapter.safetensors:1.0" in card and "- image_to_video" in card
    plain = hub.model_card(META, "me/x")
    assert "No trigger word" in plain and "Held-out" not in plain


def test_build_folder(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"loss_base": 1.0, "loss_adapter": None}))
    files = hub.build_folder(adapter_dir(tmp_path), tmp_path / "up", "me/x", "zxq", metrics)
    assert [p.name for p in files] == ["README.md", "adapter.safetensors", "metrics.json"]
    assert "| loss_adapter | n/a |" in (tmp_path / "up" / "README.md").read_text()
    with pytest.raises(FileNotFoundError):
        hub.build_folder(tmp_path / "nothing", tmp_path / "up2", "me/x")


def test_full_weights_get_their_own_card(tmp_path: Path) -> None:
    from aiprod_recipes.names import FULL_WEIGHTS_FILE
    from aiprod_recipes.training.lora import FULL_FORMAT

    weights = tmp_path / "step_000010.safetensors"
    save_file({"model.diffusion_model.x.weight": torch.zeros(2, 2)}, str(weights),
              metadata={"format": FULL_FORMAT, "config": "{}"})
    files = hub.build_folder(weights, tmp_path / "up", "me/full")
    assert [p.name for p in files] == ["README.md", FULL_WEIGHTS_FILE]
    card = (tmp_path / "up" / "README.md").read_text()
    assert "- full-fine-tune" in card and f"--transformer {FULL_WEIGHTS_FILE}" in card
