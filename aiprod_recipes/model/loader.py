"""Load LTX-2 components through ltx-core's own builders, only the ones asked for.

This is the path a real single-file 19B checkpoint takes in Lightricks' pipelines: one
``SingleGPUModelBuilder`` per component, each with the component's configurator (which reads
the ``config`` JSON from the safetensors header) and its key filter (which selects and
renames that component's tensors). The tiny checkpoint goes through the same code, so what
passes on a CPU here is what runs on the real model.

The transformer is the exception: ``model.streamed`` builds it block by block from the same
configurator and key map, so it can be quantized while it loads (``LoadOptions.quant``) and
keep the blocks that block swap moves on the CPU (``LoadOptions.blocks_on_cpu``). Gemma can
load in 8 bit (``LoadOptions.text_in_8bit``, CUDA only, see ``model.text8bit``).

Builders default to CUDA, so a device is always passed. A builder that finds a tensor
missing from the file silently returns a model still on the meta device; ``_checked``
turns that into an error.

The Gemma text encoder and the V1 text-feature projection are sized by ltx-core's
module-global Gemma config (see ``gemma_config``): the Gemma folder's ``config.json``
is applied while they are built. Without a Gemma folder the projection's width and depth
are read from the checkpoint header.

ltx-core's Gemma package imports all of transformers, and the streamed transformer loader
imports the quantization library (which does too), so each is imported only when its
component is built: a stage that needs the VAEs (latents, reference) never pays for them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from ltx_core.loader import SingleGPUModelBuilder
from ltx_core.model.audio_vae import (
    AUDIO_VAE_DECODER_COMFY_KEYS_FILTER,
    AUDIO_VAE_ENCODER_COMFY_KEYS_FILTER,
    VOCODER_COMFY_KEYS_FILTER,
    AudioDecoder,
    AudioDecoderConfigurator,
    AudioEncoder,
    AudioEncoderConfigurator,
    Vocoder,
    VocoderConfigurator,
    VocoderWithBWE,
)
from ltx_core.model.transformer.model import LTXModel
from ltx_core.model.video_vae import (
    VAE_DECODER_COMFY_KEYS_FILTER,
    VAE_ENCODER_COMFY_KEYS_FILTER,
    VideoDecoder,
    VideoDecoderConfigurator,
    VideoEncoder,
    VideoEncoderConfigurator,
)

from aiprod_recipes.model.header import projection_text_dims

if TYPE_CHECKING:
    from ltx_core.text_encoders.gemma import EmbeddingsProcessor, GemmaTextEncoder
    from ltx_core.text_encoders.gemma.config import Gemma3ConfigData

    from aiprod_recipes.model.streamed import StateHook

COMPONENTS = frozenset(
    {
        "transformer",
        "video_encoder",
        "video_decoder",
        "audio_encoder",
        "audio_decoder",
        "vocoder",
        "text_encoder",
        "embeddings_processor",
    }
)
_NEEDS_GEMMA_DIR = frozenset({"text_encoder"})
_TEXT = frozenset({"text_encoder", "embeddings_processor"})
"""Components sized by ltx-core's Gemma config (built with the Gemma package imported)."""
_CPU = torch.device("cpu")


@dataclass
class Components:
    """The loaded components; those not asked for stay None."""

    transformer: LTXModel | None = None
    video_encoder: VideoEncoder | None = None
    video_decoder: VideoDecoder | None = None
    audio_encoder: AudioEncoder | None = None
    audio_decoder: AudioDecoder | None = None
    vocoder: Vocoder | VocoderWithBWE | None = None
    text_encoder: GemmaTextEncoder | None = None
    embeddings_processor: EmbeddingsProcessor | None = None


@dataclass(frozen=True)
class LoadOptions:
    """How the big components are placed; the defaults load everything as it is stored."""

    quant: str = "none"
    """Transformer base linears: "none", "int8" or "fp8", quantized block by block."""
    blocks_on_cpu: int = 0
    """The last N transformer blocks stay on the CPU (block swap moves them when used)."""
    text_in_8bit: bool = False
    """Gemma's language model in 8 bit (bitsandbytes, CUDA only)."""
    state_hooks: tuple[StateHook, ...] = ()
    """Edit the transformer's tensors as they load, before quantization (adapter fusion)."""


def _projection_gemma_config(checkpoint: Path) -> Gemma3ConfigData:
    """Gemma text dims implied by the V1 projection weight's shape in the header."""
    from ltx_core.text_encoders.gemma.config import Gemma3ConfigData

    from aiprod_recipes.model.gemma_config import with_text_dims

    dims = projection_text_dims(checkpoint)
    if dims is None:
        return Gemma3ConfigData()
    return with_text_dims(hidden_size=dims[0], num_hidden_layers=dims[1])


def gemma_weight_paths(gemma_dir: Path) -> tuple[str, ...]:
    """The Gemma weight shards, found the way Lightricks' pipelines find them."""
    first = sorted(Path(gemma_dir).rglob("model*.safetensors"))
    if not first:
        raise FileNotFoundError(f"no model*.safetensors under {gemma_dir}")
    return tuple(str(p) for p in sorted(first[0].parent.glob("*.safetensors")))


def _builders(checkpoint: str) -> dict[str, SingleGPUModelBuilder]:
    """One builder per checkpoint component, with ltx-core's own key filters."""
    specs = {
        "video_encoder": (VideoEncoderConfigurator, VAE_ENCODER_COMFY_KEYS_FILTER),
        "video_decoder": (VideoDecoderConfigurator, VAE_DECODER_COMFY_KEYS_FILTER),
        "audio_encoder": (AudioEncoderConfigurator, AUDIO_VAE_ENCODER_COMFY_KEYS_FILTER),
        "audio_decoder": (AudioDecoderConfigurator, AUDIO_VAE_DECODER_COMFY_KEYS_FILTER),
        "vocoder": (VocoderConfigurator, VOCODER_COMFY_KEYS_FILTER),
    }
    return {
        name: SingleGPUModelBuilder(
            model_class_configurator=configurator,
            model_path=checkpoint,
            model_sd_ops=sd_ops,
        )
        for name, (configurator, sd_ops) in specs.items()
    }


def _text_encoder(gemma_dir: Path, device: torch.device, dtype: torch.dtype,
                  in_8bit: bool) -> torch.nn.Module:
    """Gemma on ``device``; in 8 bit it is built on the CPU and quantized as it moves."""
    from aiprod_recipes.model.text8bit import check_8bit_device, to_8bit_linears

    builder = _text_encoder_builder(gemma_dir)
    if not in_8bit:
        return builder.build(device=device, dtype=dtype)
    check_8bit_device(device)
    module = builder.build(device=_CPU, dtype=dtype)
    to_8bit_linears(module)
    return module.to(device)


def _embeddings_processor_builder(checkpoint: str) -> SingleGPUModelBuilder:
    from ltx_core.text_encoders.gemma import (
        EMBEDDINGS_PROCESSOR_KEY_OPS,
        EmbeddingsProcessorConfigurator,
    )

    return SingleGPUModelBuilder(model_class_configurator=EmbeddingsProcessorConfigurator,
                                 model_path=checkpoint, model_sd_ops=EMBEDDINGS_PROCESSOR_KEY_OPS)


def _text_encoder_builder(gemma_dir: Path) -> SingleGPUModelBuilder:
    from ltx_core.text_encoders.gemma import (
        GEMMA_LLM_KEY_OPS,
        GEMMA_MODEL_OPS,
        GemmaTextEncoderConfigurator,
        module_ops_from_gemma_root,
    )

    return SingleGPUModelBuilder(
        model_class_configurator=GemmaTextEncoderConfigurator,
        model_path=gemma_weight_paths(gemma_dir),
        model_sd_ops=GEMMA_LLM_KEY_OPS,
        module_ops=(GEMMA_MODEL_OPS, *module_ops_from_gemma_root(str(gemma_dir))),
    )


def _checked(name: str, module: torch.nn.Module) -> torch.nn.Module:
    """Fail loudly where ltx-core would return a half-loaded (meta) model."""
    missing = [n for n, t in (*module.named_parameters(), *module.named_buffers()) if t.is_meta]
    if missing:
        raise ValueError(f"{name}: tensors missing from the checkpoint: {missing[:5]}")
    return module.eval()


def _validate(want: Iterable[str], gemma_dir: Path | None) -> frozenset[str]:
    wanted = frozenset(want)
    unknown = wanted - COMPONENTS
    if unknown:
        raise ValueError(f"unknown components {sorted(unknown)}; known: {sorted(COMPONENTS)}")
    if wanted & _NEEDS_GEMMA_DIR and gemma_dir is None:
        raise ValueError("the text encoder needs gemma_dir")
    return wanted


def load_components(
    checkpoint: Path,
    gemma_dir: Path | None,
    want: Iterable[str],
    device: torch.device | str,
    dtype: torch.dtype,
    options: LoadOptions | None = None,
) -> Components:
    """Build each wanted component from ``checkpoint`` (and ``gemma_dir``) on ``device``.

    ``want`` names fields of ``Components``. ``gemma_dir`` is needed for "text_encoder";
    when given it also sizes "embeddings_processor" (otherwise the header does).
    ``options`` quantize the transformer while it loads, keep swapped blocks on the CPU and
    load Gemma in 8 bit.
    """
    options = options or LoadOptions()
    wanted = _validate(want, gemma_dir)
    device = torch.device(device)
    builders = _builders(str(checkpoint))
    loaded: dict[str, torch.nn.Module] = {}
    if "transformer" in wanted:
        from aiprod_recipes.model.streamed import load_transformer

        loaded["transformer"] = load_transformer(Path(checkpoint), device, dtype, options.quant,
                                                 options.blocks_on_cpu, options.state_hooks)
    for name in sorted(wanted - {"transformer"} - _TEXT):
        loaded[name] = builders[name].build(device=device, dtype=dtype)
    if wanted & _TEXT:
        loaded.update(_load_text(checkpoint, gemma_dir, wanted, device, dtype,
                                 options.text_in_8bit))
    return Components(**{name: _checked(name, module) for name, module in loaded.items()})


def _load_text(checkpoint: Path, gemma_dir: Path | None, wanted: frozenset[str],
               device: torch.device, dtype: torch.dtype,
               in_8bit: bool) -> dict[str, torch.nn.Module]:
    """The text-side components, under the Gemma config of ``gemma_dir`` (or the header's)."""
    from aiprod_recipes.model.gemma_config import gemma_config_applied, read_gemma_config

    gemma = read_gemma_config(gemma_dir) if gemma_dir is not None else None
    loaded: dict[str, torch.nn.Module] = {}
    if "embeddings_processor" in wanted:
        with gemma_config_applied(gemma or _projection_gemma_config(Path(checkpoint))):
            loaded["embeddings_processor"] = _embeddings_processor_builder(
                str(checkpoint)).build(device=device, dtype=dtype)
    if "text_encoder" in wanted and gemma_dir is not None and gemma is not None:
        with gemma_config_applied(gemma):
            loaded["text_encoder"] = _text_encoder(gemma_dir, device, dtype, in_8bit)
    return loaded
