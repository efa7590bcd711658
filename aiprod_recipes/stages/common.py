"""What several model stages share: device and dtype from the spec, loading the components a
stage needs, and reading a scene clip's frames and sound out of the ingest shards."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from aiprod_recipes.model.loader import Components, fingerprint, load_components
from aiprod_recipes.registry import ModelPaths
from aiprod_recipes.spec import Model

DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


def resolve_device(name: str) -> torch.device:
    """"auto" is CUDA when present, else the CPU; an explicit CUDA device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"model.device = {name!r} but no CUDA device is available")
    return device


def compute_dtype(model: Model, device: torch.device) -> torch.dtype:
    """bf16 weights compute in float32 on the CPU (fast, exact enough for tiny models)."""
    dtype = DTYPES[model.dtype]
    return torch.float32 if device.type == "cpu" else dtype


def load_model(model: Model, paths: ModelPaths, want: Iterable[str]) -> Components:
    device = resolve_device(model.device)
    gemma = paths.gemma_dir if "text_encoder" in set(want) else None
    return load_components(paths.checkpoint, gemma, want, device, compute_dtype(model, device))


def model_fingerprint(paths: ModelPaths) -> str:
    """The checkpoint's fingerprint (header + size), recorded in every item key."""
    return fingerprint(paths.checkpoint)


def decode_clip(data: bytes, fps: float, audio_rate: int | None,
                duration_s: float | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Frames [N, H, W, 3] and stereo audio [2, T] (or None) of an mp4 held in memory."""
    from aiprod_recipes.media.audio import decode_audio
    from aiprod_recipes.media.video import decode_frames

    with tempfile.NamedTemporaryFile(suffix=".mp4") as f:
        f.write(data)
        f.flush()
        frames = decode_frames(Path(f.name), fps, 0.0, duration_s)
        audio = None
        if audio_rate is not None:
            audio = decode_audio(Path(f.name), audio_rate, 2, 0.0, duration_s)
    return frames, audio
