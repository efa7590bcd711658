"""Point ltx-core's module-global Gemma-3 config at the Gemma folder actually being loaded.

ltx-core 1.0.0 does not read the Gemma folder's ``config.json``: GemmaTextEncoderConfigurator
and the V1 feature extractor (``text_embedding_projection``) size themselves from the module
global ``GEMMA3_CONFIG_FOR_LTX`` (Gemma-3-12B). A tiny Gemma therefore loads only if that
global describes it for the duration of the build. ``gemma_config_applied`` does this by
mutating the one shared dataclass instance in place (both ltx-core modules hold a reference
to it) and restoring it afterwards, under a lock because it is process-global state.

Only fields ltx-core's dataclasses declare are taken from the JSON, so a real Gemma-3-12B
folder (whose config.json matches the defaults) is a no-op.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ltx_core.text_encoders.gemma.config import (
    GEMMA3_CONFIG_FOR_LTX,
    Gemma3ConfigData,
    Gemma3RopeScaling,
    Gemma3TextConfig,
    Gemma3VisionConfig,
)

_LOCK = threading.RLock()


def _known(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """Keep the keys the dataclass declares."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in values.items() if k in names}


def config_data_from_dict(config: dict[str, Any]) -> Gemma3ConfigData:
    """Gemma3ConfigData with the given HF ``config.json`` values over ltx-core's defaults."""
    text = _known(Gemma3TextConfig, config.get("text_config", {}))
    if isinstance(text.get("rope_scaling"), dict):
        text["rope_scaling"] = Gemma3RopeScaling(**_known(Gemma3RopeScaling, text["rope_scaling"]))
    top = _known(Gemma3ConfigData, config)
    top["text_config"] = dataclasses.replace(Gemma3TextConfig(), **text)
    top["vision_config"] = dataclasses.replace(
        Gemma3VisionConfig(), **_known(Gemma3VisionConfig, config.get("vision_config", {}))
    )
    return dataclasses.replace(Gemma3ConfigData(), **top)


def read_gemma_config(gemma_dir: Path) -> Gemma3ConfigData:
    """The config of a Gemma folder (its first ``config.json``); defaults when there is none."""
    found = sorted(Path(gemma_dir).rglob("config.json"))
    if not found:
        return Gemma3ConfigData()
    return config_data_from_dict(json.loads(found[0].read_text()))


@contextmanager
def gemma_config_applied(config: Gemma3ConfigData) -> Iterator[None]:
    """Make ltx-core's global Gemma config equal ``config`` inside the block."""
    with _LOCK:
        saved = copy.deepcopy(GEMMA3_CONFIG_FOR_LTX)
        _assign(config)
        try:
            yield
        finally:
            _assign(saved)


def _assign(config: Gemma3ConfigData) -> None:
    for field in dataclasses.fields(Gemma3ConfigData):
        setattr(GEMMA3_CONFIG_FOR_LTX, field.name, copy.deepcopy(getattr(config, field.name)))


def with_text_dims(hidden_size: int, num_hidden_layers: int) -> Gemma3ConfigData:
    """Defaults with only the text width and depth replaced.

    The V1 feature extractor needs only these two numbers, and they can be read from the
    shape of ``text_embedding_projection.aggregate_embed.weight`` ([hidden, hidden x
    (layers + 1)]) without the Gemma folder.
    """
    text = dataclasses.replace(
        Gemma3TextConfig(), hidden_size=hidden_size, num_hidden_layers=num_hidden_layers
    )
    return dataclasses.replace(Gemma3ConfigData(), text_config=text)
