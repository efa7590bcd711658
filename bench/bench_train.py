"""Train step time: the pipeline's step against a bare PyTorch loop on the same model.

Both sides train the same tiny LTX-2 transformer with the same LoRA on the same batch.
The pipeline side is ``training.loop.train_step`` (text connectors, tokenization, noise
sampling, masked loss, clipping, scheduler, metrics). The baseline precomputes tokens and
context once and runs only forward + MSE + backward + AdamW. Runs alternate and the median
of each is printed (goal: pipeline overhead <= 10%).

    python bench/bench_train.py [--steps 30] [--size 64x64x17]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def build(size: tuple[int, int, int], root: Path):
    from aiprod_recipes.model.loader import load_components
    from aiprod_recipes.model.text import encode_captions
    from aiprod_recipes.model.tiny import build_tiny_model
    from aiprod_recipes.model.vae import audio_latent_frames, video_latent_shape
    from aiprod_recipes.training.forward import Batch

    paths = build_tiny_model(root / "model")
    want = {"transformer", "embeddings_processor", "text_encoder"}
    comps = load_components(paths.checkpoint, paths.gemma_dir, want, "cpu", torch.float32)
    (features,) = encode_captions(comps.text_encoder, comps.embeddings_processor,
                                  ["a red ball bounces on green grass"], 128)
    w, h, f = size
    g = torch.Generator().manual_seed(0)
    video = torch.randn((1, *video_latent_shape(f, h, w)), generator=g)
    audio = torch.randn((1, 8, audio_latent_frames(f / 24), 16), generator=g)
    return paths, Batch(video=video, text=[features], audio=audio, fps=24.0)


def fresh_state(paths, spec):
    from aiprod_recipes.model.loader import load_components
    from aiprod_recipes.training import loop

    comps = load_components(paths.checkpoint, None, {"transformer", "embeddings_processor"},
                            "cpu", torch.float32)
    return loop.setup(comps.transformer, comps.embeddings_processor,
                      loop.Sections.from_spec(spec), "bench", "cpu")


def pipeline_steps(state, batch, steps: int) -> list[float]:
    from aiprod_recipes.training import loop

    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loop.train_step(state, [batch])
        times.append(time.perf_counter() - start)
    return times


def bare_steps(state, batch, steps: int) -> list[float]:
    """forward + MSE + backward + AdamW, nothing else (tokens, context, noise precomputed)."""
    from aiprod_recipes.training.flow import noise_tokens
    from aiprod_recipes.training.forward import predict, text_context, tokenize

    model, params = state.model, list(state.params.values())
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    tokens = tokenize(batch, with_audio=True)
    context = text_context(state.processor, batch)
    g = torch.Generator().manual_seed(1)
    sigma = torch.tensor([0.5])
    video = noise_tokens(tokens.video, sigma, torch.zeros(tokens.video.shape[:2], dtype=bool), g)
    audio = noise_tokens(tokens.audio, sigma, torch.zeros(tokens.audio.shape[:2], dtype=bool), g)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        pv, pa = predict(model, tokens, context, video, audio)
        loss = torch.mean((pv.float() - video.target) ** 2) + torch.mean(
            (pa.float() - audio.target) ** 2)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    from aiprod_recipes.specio import decode_spec

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--size", default="64x64x17")
    args = parser.parse_args()
    size = tuple(int(x) for x in args.size.split("x"))
    spec = decode_spec({"lora": {"rank": 8, "alpha": 8.0}, "train": {"steps": 10_000,
                        "checkpoint_every": 0, "mixed_precision": "no"}})
    with tempfile.TemporaryDirectory() as tmp:
        paths, batch = build(size, Path(tmp))
        pipe_state, bare_state = fresh_state(paths, spec), fresh_state(paths, spec)
        pipeline_steps(pipe_state, batch, 3)
        bare_steps(bare_state, batch, 3)
        pipe, bare = [], []
        for _ in range(3):  # interleaved, so a busy spell of the machine hits both loops
            pipe += pipeline_steps(pipe_state, batch, max(1, args.steps // 3))
            bare += bare_steps(bare_state, batch, max(1, args.steps // 3))
    p, b = statistics.median(pipe), statistics.median(bare)
    print(f"size {args.size}, {len(pipe)} steps each, torch threads {torch.get_num_threads()}")
    print(f"{'loop':<10} {'median ms/step':>15}")
    print(f"{'pipeline':<10} {p * 1000:>15.1f}")
    print(f"{'bare':<10} {b * 1000:>15.1f}")
    print(f"pipeline overhead: {p / b - 1:+.1%} (goal: <= +10%)")


if __name__ == "__main__":
    main()
