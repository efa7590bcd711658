"""The tiny checkpoint: real header layout, bf16, small, and byte-identical per seed."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open

from aiprod_recipes.model.header import checkpoint_config, checkpoint_fingerprint, read_header
from aiprod_recipes.model.tiny import build_tiny_model
from tests.model_fixtures import TINY_LAYERS, TINY_SEED, tiny_model_paths

PREFIXES = (
    "model.diffusion_model.",
    "vae.",
    "audio_vae.",
    "vocoder.",
    "text_embedding_projection.",
)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_gives_identical_bytes(tmp_path):
    tiny_model = tiny_model_paths()
    again = build_tiny_model(tmp_path / "again", seed=TINY_SEED, layers=TINY_LAYERS)
    assert _files(again.checkpoint.parent) == _files(tiny_model.checkpoint.parent)


def test_other_seed_changes_weights_not_layout(tmp_path):
    tiny_model = tiny_model_paths()
    other = build_tiny_model(tmp_path / "other", seed=TINY_SEED + 1, layers=TINY_LAYERS)
    assert other.checkpoint.read_bytes() != tiny_model.checkpoint.read_bytes()
    assert checkpoint_fingerprint(other.checkpoint) == checkpoint_fingerprint(tiny_model.checkpoint)
    assert (other.gemma_dir / "tokenizer.model").read_bytes() == (
        tiny_model.gemma_dir / "tokenizer.model"
    ).read_bytes()


def test_header_has_config_and_real_prefixes():
    tiny_model = tiny_model_paths()
    _, header = read_header(tiny_model.checkpoint)
    keys = [k for k in header if k != "__metadata__"]
    assert {p for p in PREFIXES if any(k.startswith(p) for k in keys)} == set(PREFIXES)
    assert all(k.startswith(PREFIXES) for k in keys)
    assert {header[k]["dtype"] for k in keys} == {"BF16"}
    config = checkpoint_config(tiny_model.checkpoint)
    assert set(config) == {"transformer", "vae", "audio_vae", "vocoder"}
    assert config["transformer"]["num_layers"] == TINY_LAYERS
    assert config["vae"]["latent_channels"] == 128


def test_checkpoint_is_small():
    tiny_model = tiny_model_paths()
    assert tiny_model.checkpoint.stat().st_size < 12 * 2**20


def test_gemma_folder_layout():
    tiny_model = tiny_model_paths()
    names = {p.name for p in tiny_model.gemma_dir.iterdir()}
    assert names == {
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "tokenizer.json",
        "tokenizer.model",
        "tokenizer_config.json",
    }
    config = json.loads((tiny_model.gemma_dir / "config.json").read_text())
    with safe_open(str(tiny_model.gemma_dir / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
        embed = f.get_slice("language_model.model.embed_tokens.weight").get_shape()
    assert all(
        k.startswith(("language_model.model.", "vision_tower.", "multi_modal_projector."))
        for k in keys
    )
    assert embed == [config["text_config"]["vocab_size"], config["text_config"]["hidden_size"]]
