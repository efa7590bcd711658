"""Which transformer the planner sizes: a checkpoint's, the tiny one, or a published one.

- a checkpoint spec: the ``config`` JSON in the safetensors header, read without touching
  the tensors (``model.header.checkpoint_config``);
- the tiny spec: the config the base stage writes (``model.tiny_config.ltx_config``);
- ``--model ltx2-19b``: the published LTX-2 19B configuration shipped with the package
  (``ltx2-19b.json``), to plan a run before the 40 GB checkpoint is on disk.

Sources of ``ltx2-19b.json``: the transformer and connector sizes are those of
huggingface/diffusers ``scripts/convert_ltx2_to_diffusers.py`` (``get_ltx2_transformer_config``
and ``get_ltx2_text_encoder_config`` for version "2.0": 48 layers, 32 heads x 128 video,
32 heads x 64 audio, cross-attention 4096 / 2048, caption channels 3840 from Gemma-3-12B's
48 layers + embeddings, connectors of 2 layers x 30 heads x 128 with 128 registers); the
fixed flags are the values ltx-core 1.0.0's ``LTXModelConfigurator`` checks. Built on the
meta device it has 18.88 B transformer parameters (Lightricks' model card: "19B").

The Gemma text width and depth size the text connectors' input projection; they come from
the checkpoint header (the projection's shape) or the tiny Gemma's numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from aiprod_recipes.spec import CheckpointModel, Spec, TinyModel

__all__ = ["PUBLISHED", "ModelConfig", "UnknownModel", "load_model_config"]

PUBLISHED: dict[str, str] = {"ltx2-19b": "ltx2-19b.json"}
"""``--model`` names -> config files shipped in this package."""

GEMMA3_12B_TEXT = (3840, 48)
"""Hidden size and depth of Gemma-3-12B, LTX-2's text encoder."""


class UnknownModel(ValueError):
    """No config can be found for the model asked for."""


@dataclass(frozen=True)
class ModelConfig:
    """A transformer config and where it came from."""

    name: str
    config: dict[str, Any]
    gemma_text: tuple[int, int]
    """(hidden size, layers) of the Gemma whose features the connectors read."""

    @property
    def transformer(self) -> dict[str, Any]:
        return self.config.get("transformer", {})

    @property
    def num_layers(self) -> int:
        return int(self.transformer.get("num_layers", 48))


def published(name: str) -> ModelConfig:
    """A config shipped with the package, by ``--model`` name."""
    if name not in PUBLISHED:
        raise UnknownModel(f"--model {name!r}: known models are {', '.join(sorted(PUBLISHED))}")
    text = resources.files(__package__).joinpath(PUBLISHED[name]).read_text(encoding="utf-8")
    config = {k: v for k, v in json.loads(text).items() if not k.startswith("_")}
    return ModelConfig(name, config, GEMMA3_12B_TEXT)


def _tiny(source: TinyModel) -> ModelConfig:
    from aiprod_recipes.model.tiny_config import GEMMA_HIDDEN, GEMMA_LAYERS, ltx_config

    return ModelConfig(f"tiny ({source.layers} layers)", ltx_config(source.layers),
                       (GEMMA_HIDDEN, GEMMA_LAYERS))


def _checkpoint(source: CheckpointModel) -> ModelConfig:
    from aiprod_recipes.model.header import checkpoint_config, projection_text_dims

    path = Path(source.path)
    if not path.is_file():
        raise UnknownModel(
            f"model.source.path: {path} does not exist; plan with --model "
            f"{' / '.join(sorted(PUBLISHED))} to size a published model instead")
    config = checkpoint_config(path)
    if "transformer" not in config:
        raise UnknownModel(f"{path}: the safetensors header has no transformer config")
    return ModelConfig(f"checkpoint {path.name}", config,
                       projection_text_dims(path) or GEMMA3_12B_TEXT)


def load_model_config(spec: Spec, model: str | None = None) -> ModelConfig:
    """The config for ``spec``'s model, or for the published ``model`` when given."""
    if model is not None:
        return published(model)
    source = spec.model.source
    if isinstance(source, TinyModel):
        return _tiny(source)
    return _checkpoint(source)
