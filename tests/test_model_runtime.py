"""The model runtime: model work on the CPU gives the same numbers whatever thread count the
process started with (a fresh clone on another machine must rebuild dvc.lock)."""

from __future__ import annotations

import torch

from aiprod_recipes.inference.metrics import ValClip, model_losses
from aiprod_recipes.model.runtime import ModelPaths, load_model
from aiprod_recipes.model.tiny import TinyPaths
from aiprod_recipes.spec import Flow, Model, TextToVideo
from aiprod_recipes.training.forward import Batch
from aiprod_recipes.training.strategies import strategy_for
from tests.model_fixtures import tiny_model  # noqa: F401
from tests.test_training_fixtures import prompt

AUDIO_FRAMES = 10
"""A 9-frame clip at 24 fps has 10 audio latent frames; with 5 to 11 audio tokens the audio
input projection's matmul rounds differently on 1 and 2 threads (MKL on x86)."""


def _heldout_loss(model: torch.nn.Module, processor: torch.nn.Module) -> float:
    g = torch.Generator().manual_seed(0)
    batch = Batch(video=torch.randn(1, 128, 2, 2, 2, generator=g), text=[prompt(g)],
                  audio=torch.randn(1, 8, AUDIO_FRAMES, 16, generator=g), fps=24.0)
    losses = model_losses(model, processor, [ValClip("clip", batch)],
                          strategy_for(TextToVideo()), Flow(), [0.5], seed=0)
    return losses[0.5][0]


def test_cpu_results_do_not_depend_on_the_thread_count(tiny_model: TinyPaths) -> None:  # noqa: F811
    spec = Model(dtype="float32", device="cpu")
    paths = ModelPaths(tiny_model.checkpoint, tiny_model.gemma_dir)
    torch.set_num_threads(2)  # a 2-core machine, or a shell without OMP_NUM_THREADS=1
    components = load_model(spec, paths, {"transformer", "embeddings_processor"})
    loaded_on_two = _heldout_loss(components.transformer, components.embeddings_processor)
    torch.set_num_threads(1)
    on_one = _heldout_loss(components.transformer, components.embeddings_processor)
    assert loaded_on_two == on_one
