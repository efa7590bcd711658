"""What a safetensors checkpoint says about itself, read without loading a tensor.

The header holds every tensor's name, dtype, shape and byte offsets plus the ``config``
JSON that ltx-core's configurators build the model from. Reading it costs a few kilobytes
whatever the checkpoint's size, so the planner, provenance and item keys use it freely;
nothing here imports torch or ltx-core.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any


def read_header(checkpoint: Path) -> tuple[bytes, dict[str, Any]]:
    """The raw safetensors header bytes and their parsed JSON (no tensor data is read)."""
    with open(checkpoint, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        raw = f.read(length)
    if len(raw) != length:
        raise ValueError(f"{checkpoint}: truncated safetensors header")
    return raw, json.loads(raw)


def checkpoint_fingerprint(checkpoint: Path) -> str:
    """sha256 of the safetensors header and the file size: cheap even for tens of GB.

    Two files with the same header and size differ only if weights were edited in place.
    It is recorded in item keys, provenance and adapter headers, so an adapter or a cached
    latent is never silently used with another base model.
    """
    raw, _ = read_header(checkpoint)
    digest = hashlib.sha256(raw)
    digest.update(str(Path(checkpoint).stat().st_size).encode())
    return digest.hexdigest()


PROJECTION_KEY = "text_embedding_projection.aggregate_embed.weight"
"""The text connectors' input projection: its shape gives the Gemma it was trained on."""


def projection_text_dims(checkpoint: Path) -> tuple[int, int] | None:
    """(hidden size, layers) of the Gemma whose stacked hidden states (layers + embeddings)
    the checkpoint's text projection reads, from the header; None without that weight."""
    _, header = read_header(checkpoint)
    entry = header.get(PROJECTION_KEY)
    if entry is None:
        return None
    hidden, flat = entry["shape"]
    return hidden, flat // hidden - 1


def checkpoint_config(checkpoint: Path) -> dict[str, Any]:
    """The ``config`` JSON stored in the checkpoint header."""
    _, header = read_header(checkpoint)
    return json.loads(header.get("__metadata__", {}).get("config", "{}"))
