"""Loading through ltx-core's builders returns exactly the saved weights."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from ltx_core.loader.sd_ops import SDOps
from ltx_core.model.audio_vae import (
    AUDIO_VAE_DECODER_COMFY_KEYS_FILTER,
    AUDIO_VAE_ENCODER_COMFY_KEYS_FILTER,
    VOCODER_COMFY_KEYS_FILTER,
)
from ltx_core.model.transformer.model_configurator import LTXV_MODEL_COMFY_RENAMING_MAP
from ltx_core.model.video_vae import VAE_DECODER_COMFY_KEYS_FILTER, VAE_ENCODER_COMFY_KEYS_FILTER
from ltx_core.text_encoders.gemma import EMBEDDINGS_PROCESSOR_KEY_OPS, GEMMA_LLM_KEY_OPS
from ltx_core.text_encoders.gemma.config import GEMMA3_CONFIG_FOR_LTX
from safetensors.torch import load_file

from aiprod_recipes.model.header import checkpoint_fingerprint
from aiprod_recipes.model.loader import Components, load_components
from tests.model_fixtures import tiny_model_components, tiny_model_paths

KEY_OPS = {
    "transformer": LTXV_MODEL_COMFY_RENAMING_MAP,
    "video_encoder": VAE_ENCODER_COMFY_KEYS_FILTER,
    "video_decoder": VAE_DECODER_COMFY_KEYS_FILTER,
    "audio_encoder": AUDIO_VAE_ENCODER_COMFY_KEYS_FILTER,
    "audio_decoder": AUDIO_VAE_DECODER_COMFY_KEYS_FILTER,
    "vocoder": VOCODER_COMFY_KEYS_FILTER,
    "embeddings_processor": EMBEDDINGS_PROCESSOR_KEY_OPS,
}


def _mapped(tensors: dict[str, torch.Tensor], ops: SDOps) -> dict[str, torch.Tensor]:
    """The file's tensors under the names ltx-core gives them for one component."""
    out: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        new = ops.apply_to_key(key)
        if new is not None:
            out.update(dict(ops.apply_to_key_value(new, value)))
    return out


def _assert_same(module: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    state = module.state_dict()
    params = {name for name, _ in module.named_parameters()}
    assert params <= set(expected), sorted(params - set(expected))[:5]
    compared = [name for name in state if name in expected]
    assert len(compared) >= len(params)
    for name in compared:
        assert state[name].shape == expected[name].shape, name
        assert torch.equal(state[name], expected[name].to(state[name].dtype)), name


@pytest.mark.parametrize("name", sorted(KEY_OPS))
def test_checkpoint_round_trip(name):
    tiny_model = tiny_model_paths()
    tiny_components = tiny_model_components()
    saved = load_file(str(tiny_model.checkpoint))
    _assert_same(getattr(tiny_components, name), _mapped(saved, KEY_OPS[name]))


def test_gemma_round_trip():
    tiny_model = tiny_model_paths()
    tiny_components = tiny_model_components()
    saved = load_file(str(tiny_model.gemma_dir / "model.safetensors"))
    _assert_same(tiny_components.text_encoder, _mapped(saved, GEMMA_LLM_KEY_OPS))


def test_bf16_load_is_bit_exact():
    tiny_model = tiny_model_paths()
    loaded = load_components(tiny_model.checkpoint, None, {"vocoder"}, "cpu", torch.bfloat16)
    saved = load_file(str(tiny_model.checkpoint))
    _assert_same(loaded.vocoder, _mapped(saved, VOCODER_COMFY_KEYS_FILTER))
    assert next(loaded.vocoder.parameters()).dtype == torch.bfloat16


def test_loads_only_what_is_asked():
    tiny_model = tiny_model_paths()
    loaded = load_components(tiny_model.checkpoint, None, {"video_encoder"}, "cpu", torch.float32)
    present = {
        f.name for f in dataclasses.fields(Components) if getattr(loaded, f.name) is not None
    }
    assert present == {"video_encoder"}


def test_projection_sized_from_header_without_gemma():
    tiny_model = tiny_model_paths()
    loaded = load_components(
        tiny_model.checkpoint, None, {"embeddings_processor"}, "cpu", torch.float32
    )
    saved = load_file(str(tiny_model.checkpoint))
    _assert_same(loaded.embeddings_processor, _mapped(saved, EMBEDDINGS_PROCESSOR_KEY_OPS))


def test_global_gemma_config_is_restored():
    tiny_model_components()
    assert GEMMA3_CONFIG_FOR_LTX.text_config.hidden_size == 3840
    assert GEMMA3_CONFIG_FOR_LTX.text_config.num_hidden_layers == 48


def test_bad_requests_fail():
    tiny_model = tiny_model_paths()
    with pytest.raises(ValueError, match="unknown components"):
        load_components(tiny_model.checkpoint, None, {"unet"}, "cpu", torch.float32)
    with pytest.raises(ValueError, match="gemma_dir"):
        load_components(tiny_model.checkpoint, None, {"text_encoder"}, "cpu", torch.float32)


def test_fingerprint_is_stable_and_cheap(tmp_path):
    tiny_model = tiny_model_paths()
    first = checkpoint_fingerprint(tiny_model.checkpoint)
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(tiny_model.checkpoint.read_bytes())
    assert checkpoint_fingerprint(copy) == first
    assert len(first) == 64
    copy.write_bytes(copy.read_bytes() + b"\0")
    assert checkpoint_fingerprint(copy) != first
