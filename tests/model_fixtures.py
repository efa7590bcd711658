"""The tiny LTX-2 model, built once per test process and shared.

``tiny_model_paths()`` builds the checkpoint and Gemma folder into a temporary directory on
first use and returns the same paths afterwards (each xdist worker builds its own; a build
takes about a second). The pytest fixtures wrap it; import them into a test module
(``from tests.model_fixtures import tiny_model, tiny_components``) to use them.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from aiprod_recipes.model.loader import COMPONENTS, Components, load_components
from aiprod_recipes.model.tiny import TinyPaths, build_tiny_model

TINY_SEED = 0
TINY_LAYERS = 2


@functools.lru_cache(maxsize=1)
def tiny_model_paths() -> TinyPaths:
    """The process-wide tiny model (seed 0, 2 layers), removed when the process exits."""
    root = Path(tempfile.mkdtemp(prefix="aiprod-tiny-ltx2-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return build_tiny_model(root / "model", seed=TINY_SEED, layers=TINY_LAYERS)


@functools.lru_cache(maxsize=1)
def tiny_model_components() -> Components:
    """Every component of the tiny model, float32 on the CPU, in eval mode.

    Shared by every test in the process: treat as read-only (load your own to train).
    """
    paths = tiny_model_paths()
    return load_components(paths.checkpoint, paths.gemma_dir, COMPONENTS, "cpu", torch.float32)


@pytest.fixture(scope="session")
def tiny_model() -> TinyPaths:
    return tiny_model_paths()


@pytest.fixture(scope="session")
def tiny_components() -> Components:
    return tiny_model_components()
