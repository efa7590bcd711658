"""Shared pieces of the training tests: the tiny model, synthetic batches, spec sections.

The transformer is loaded once per process through the shared tiny checkpoint and handed
out as deep copies, because training mutates it (LoRA injection, quantization). Torch runs
on one thread in these tests: on a shared 2-core machine a second thread only adds
contention, and one thread keeps float sums in a fixed order.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator

import pytest
import torch

from aiprod_recipes.model.loader import load_components
from aiprod_recipes.model.text import PromptFeatures
from aiprod_recipes.spec import (
    Flow,
    ImageToVideo,
    Lora,
    Memory,
    Optim,
    Quant,
    StrategyConfig,
    TextToVideo,
    Train,
    VideoToVideo,
)
from aiprod_recipes.training.forward import Batch
from aiprod_recipes.training.loop import Sections
from tests.model_fixtures import tiny_model_paths

TEXT_TOKENS = 128
TEXT_WIDTH = 64
VIDEO_SHAPE = (128, 3, 2, 2)
AUDIO_SHAPE = (8, 8, 16)
REFERENCE_SHAPE = (128, 3, 1, 1)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@functools.lru_cache(maxsize=2)
def _loaded(dtype: torch.dtype) -> tuple[torch.nn.Module, torch.nn.Module]:
    paths = tiny_model_paths()
    c = load_components(paths.checkpoint, paths.gemma_dir,
                        ["transformer", "embeddings_processor"], "cpu", dtype)
    return c.transformer, c.embeddings_processor


def fresh_model(dtype: torch.dtype = torch.float32) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A private copy of the tiny transformer and its text connectors."""
    transformer, processor = _loaded(dtype)
    return copy.deepcopy(transformer), copy.deepcopy(processor)


def prompt(generator: torch.Generator, real_tokens: int = 16) -> PromptFeatures:
    mask = torch.zeros(TEXT_TOKENS, dtype=torch.bool)
    mask[TEXT_TOKENS - real_tokens:] = True
    video = torch.randn(TEXT_TOKENS, TEXT_WIDTH, generator=generator) * mask[:, None]
    return PromptFeatures(video=video, audio=None, mask=mask)


def make_batch(seed: int = 0, batch_size: int = 1, audio: bool = True,
               reference: bool = False) -> Batch:
    """A synthetic batch with the real latent widths (128 video, 8 x 16 audio)."""
    g = torch.Generator().manual_seed(seed)
    return Batch(
        video=torch.randn(batch_size, *VIDEO_SHAPE, generator=g),
        text=[prompt(g) for _ in range(batch_size)],
        audio=torch.randn(batch_size, *AUDIO_SHAPE, generator=g) if audio else None,
        reference=torch.randn(batch_size, *REFERENCE_SHAPE, generator=g) if reference else None,
        fps=24.0,
        reference_downscale=2 if reference else 1,
    )


STRATEGIES: dict[str, StrategyConfig] = {
    "text_to_video": TextToVideo(with_audio=True),
    "image_to_video": ImageToVideo(first_frame_p=1.0, with_audio=False),
    "video_to_video": VideoToVideo(with_audio=False),
}


def batch_for(name: str, seed: int = 0) -> Batch:
    strategy = STRATEGIES[name]
    return make_batch(seed, audio=strategy.with_audio, reference=name == "video_to_video")


def sections(strategy: StrategyConfig | None = None, *, steps: int = 10, lr: float = 1e-3,
             rank: int = 8, alpha: float = 8.0, optimizer: str = "adamw",
             scheduler: str = "constant", warmup: int = 0, accumulation: int = 1,
             checkpoint_every: int = 0, mode: str = "lora", quant: str = "none",
             mixed_precision: str = "no", gradient_checkpointing: bool = False,
             seed: int = 42, blocks_to_swap: int = 0, compile: bool = False) -> Sections:
    return Sections(
        strategy=strategy or TextToVideo(),
        lora=Lora(rank=rank, alpha=alpha),
        optim=Optim(optimizer=optimizer, learning_rate=lr, scheduler=scheduler,
                    warmup_steps=warmup),
        train=Train(mode=mode, steps=steps, gradient_accumulation_steps=accumulation,
                    checkpoint_every=checkpoint_every, log_every=1, seed=seed,
                    mixed_precision=mixed_precision,
                    gradient_checkpointing=gradient_checkpointing, compile=compile),
        flow=Flow(min_tokens=16, max_tokens=256),
        quant=Quant(base=quant),
        memory=Memory(blocks_to_swap=blocks_to_swap),
    )
