"""Build the tiny LTX-2 checkpoint and tiny Gemma-3 folder, deterministically.

Every module is created by ltx-core's own configurators from the same ``config`` JSON that is
written into the checkpoint header, on the meta device (no memory, no random init), then
materialised with ``to_empty`` and filled from one ``torch.Generator`` in sorted key order.
So the same seed gives byte-identical files, and the saved keys are exactly the keys
ltx-core's loaders expect, because they are the modules' own state-dict keys mapped back
through the checkpoint prefixes.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from ltx_core.model.audio_vae import (
    AudioDecoderConfigurator,
    AudioEncoderConfigurator,
    VocoderConfigurator,
)
from ltx_core.model.transformer.model_configurator import LTXModelConfigurator
from ltx_core.model.video_vae import VideoDecoderConfigurator, VideoEncoderConfigurator
from ltx_core.text_encoders.gemma import (
    EmbeddingsProcessorConfigurator,
    GemmaTextEncoderConfigurator,
)
from safetensors.torch import save_file

from aiprod_recipes.model.gemma_config import config_data_from_dict, gemma_config_applied
from aiprod_recipes.model.tiny_config import (
    GEMMA_PREPROCESSOR_CONFIG,
    gemma_config,
    ltx_config,
)
from aiprod_recipes.model.tiny_tokenizer import write_tokenizer
from aiprod_recipes.names import CHECKPOINT_FILE, GEMMA_DIR

GEMMA_WEIGHTS_NAME = "model.safetensors"
SAVE_DTYPE = torch.bfloat16


@dataclass(frozen=True)
class TinyPaths:
    """Where a tiny build lives: the LTX-2 checkpoint and the Gemma folder."""

    checkpoint: Path
    gemma_dir: Path


Rename = Callable[[str], str]


def _prefix(prefix: str, shared: dict[str, str] | None = None) -> Rename:
    """Module key -> checkpoint key: add ``prefix``, or map a shared sub-tree elsewhere."""

    def rename(key: str) -> str:
        for local, target in (shared or {}).items():
            if key.startswith(local):
                return target + key[len(local) :]
        return prefix + key

    return rename


def _embeddings_processor_rename(key: str) -> str:
    """Inverse of ltx-core's EMBEDDINGS_PROCESSOR_KEY_OPS (V1 layout)."""
    table = {
        "feature_extractor.": "text_embedding_projection.",
        "video_connector.": "model.diffusion_model.video_embeddings_connector.",
        "audio_connector.": "model.diffusion_model.audio_embeddings_connector.",
    }
    for local, target in table.items():
        if key.startswith(local):
            return target + key[len(local) :]
    raise KeyError(key)


def _gemma_rename(key: str) -> str | None:
    """Gemma3ForConditionalGeneration key -> the HF file layout ltx-core's GEMMA_LLM_KEY_OPS reads.

    ``lm_head`` is tied to the token embedding; ltx-core recreates it from the embedding.
    """
    table = {
        "model.language_model.": "language_model.model.",
        "model.vision_tower.": "vision_tower.",
        "model.multi_modal_projector.": "multi_modal_projector.",
    }
    for local, target in table.items():
        if key.startswith(local):
            return target + key[len(local) :]
    return None


def _meta(build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """Run a configurator on the meta device and give the module real, uninitialised memory."""
    with torch.device("meta"):
        module = build()
    return module.to_empty(device="cpu")


def _ltx_modules(config: dict) -> list[tuple[torch.nn.Module, Rename]]:
    """Every LTX-2 component with the renaming from its keys to checkpoint keys."""
    vae_stats = {"per_channel_statistics.": "vae.per_channel_statistics."}
    audio_stats = {"per_channel_statistics.": "audio_vae.per_channel_statistics."}
    return [
        (
            _meta(lambda: LTXModelConfigurator.from_config(config)),
            _prefix("model.diffusion_model."),
        ),
        (
            _meta(lambda: EmbeddingsProcessorConfigurator.from_config(config)),
            _embeddings_processor_rename,
        ),
        (
            _meta(lambda: VideoEncoderConfigurator.from_config(config)),
            _prefix("vae.encoder.", vae_stats),
        ),
        (
            _meta(lambda: VideoDecoderConfigurator.from_config(config)),
            _prefix("vae.decoder.", vae_stats),
        ),
        (
            _meta(lambda: AudioEncoderConfigurator.from_config(config)),
            _prefix("audio_vae.encoder.", audio_stats),
        ),
        (
            _meta(lambda: AudioDecoderConfigurator.from_config(config)),
            _prefix("audio_vae.decoder.", audio_stats),
        ),
        (_meta(lambda: VocoderConfigurator.from_config(config)), _prefix("vocoder.")),
    ]


def _collect(
    modules: Iterable[tuple[torch.nn.Module, Callable[[str], str | None]]],
) -> dict[str, torch.Size]:
    """Checkpoint key -> shape for every persistent tensor; shared keys must agree."""
    shapes: dict[str, torch.Size] = {}
    for module, rename in modules:
        for key, tensor in module.state_dict().items():
            target = rename(key)
            if target is None:
                continue
            if target in shapes and shapes[target] != tensor.shape:
                raise ValueError(f"{target}: shapes {shapes[target]} and {tensor.shape} disagree")
            shapes[target] = tensor.shape
    return shapes


def init_tensor(key: str, shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    """A deterministic, well-scaled value for one checkpoint tensor.

    Matrices and kernels get N(0, 1/fan_in) so activations keep unit scale through the tiny
    networks; biases and Gemma's zero-centred RMSNorm weights are near 0, other norm weights
    near 1; latent statistics keep std > 0 so normalisation is invertible.
    """

    def normal(std: float, mean: float = 0.0) -> torch.Tensor:
        return torch.randn(shape, generator=generator, dtype=torch.float32) * std + mean

    if key.endswith("std-of-means"):
        return torch.rand(shape, generator=generator) + 0.5
    if key.endswith("mean-of-means"):
        return normal(0.1)
    if key.endswith("learnable_registers"):
        return torch.rand(shape, generator=generator) * 2.0 - 1.0
    if len(shape) >= 2:
        fan_in = math.prod(shape) // shape[0]
        return normal(1.0 / math.sqrt(fan_in))
    if key.endswith("bias"):
        return normal(0.02)
    if key.startswith(("language_model.", "multi_modal_projector.")):
        return normal(0.02)
    return normal(0.02, mean=1.0)


def init_state(shapes: dict[str, torch.Size], seed: int) -> dict[str, torch.Tensor]:
    """Fill every tensor from one generator, in sorted key order, then cast to bf16."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return {
        key: init_tensor(key, shapes[key], generator).to(SAVE_DTYPE).contiguous()
        for key in sorted(shapes)
    }


def _save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Write through a temporary name so a half-written file never looks complete."""
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.chmod(0o644)
    os.replace(tmp, path)


def build_ltx_checkpoint(path: Path, gemma: dict, seed: int, layers: int) -> None:
    """The single-file LTX-2 checkpoint: all components, config JSON in the header."""
    config = ltx_config(layers)
    with gemma_config_applied(config_data_from_dict(gemma)):
        shapes = _collect(_ltx_modules(config))
    metadata = {"config": json.dumps(config, sort_keys=True)}
    _save(init_state(shapes, seed), path, metadata)


def build_gemma_dir(gemma_dir: Path, seed: int) -> dict:
    """Tokenizer, config.json, preprocessor_config.json and weights of a tiny Gemma-3."""
    gemma_dir.mkdir(parents=True, exist_ok=True)
    ids = write_tokenizer(gemma_dir)
    config = gemma_config(ids.vocab_size, ids.image_token_id, ids.boi_id, ids.eoi_id)
    (gemma_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (gemma_dir / "preprocessor_config.json").write_text(
        json.dumps(GEMMA_PREPROCESSOR_CONFIG, indent=2, sort_keys=True) + "\n"
    )
    with gemma_config_applied(config_data_from_dict(config)):
        encoder = _meta(lambda: GemmaTextEncoderConfigurator.from_config({}))
    shapes = _collect([(encoder.model, _gemma_rename)])
    _save(init_state(shapes, seed + 1), gemma_dir / GEMMA_WEIGHTS_NAME, {"format": "pt"})
    return config


def build_tiny_model(out_dir: Path, seed: int = 0, layers: int = 2) -> TinyPaths:
    """Write ``out_dir/ltx2.safetensors`` and ``out_dir/gemma/``; same seed, same bytes."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = TinyPaths(checkpoint=out_dir / CHECKPOINT_FILE, gemma_dir=out_dir / GEMMA_DIR)
    gemma = build_gemma_dir(paths.gemma_dir, seed)
    build_ltx_checkpoint(paths.checkpoint, gemma, seed, layers)
    return paths
