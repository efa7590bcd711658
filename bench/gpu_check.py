"""GPU check: LoRA steps of a real-size LTX-2 per GPU preset, measured next to the planner.

On a CUDA machine, for each GPU preset in recipes/ (or those named), the published LTX-2
19B transformer and its text connectors are built from the shipped config (meta device,
then materialised on the GPU in bf16 with seeded random weights: nothing is downloaded),
made trainable by the training code itself (``training.loop.setup``: LoRA, int8 base,
8-bit Adam, gradient checkpointing as the preset says), and run for a few steps of the
preset's largest bucket with ``training.loop.train_step``. Printed per preset: seconds
per step, ``torch.cuda.max_memory_allocated`` beside the planner's estimate of it, and the
model FLOP utilisation (the planner's FLOPs per step / step time / the GPU's bf16 peak).

Without CUDA (or with --dry-run) the same code runs on the CPU with the tiny config and a
small bucket, two steps, the measured figure being the resident tensors plus the step's
peak (``planner.measure``): what CI runs to keep this script working.

    python bench/gpu_check.py [--steps 5] [--presets NAME ...] [--peak-tflops X]
                              [--dry-run] [--json results.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import msgspec
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from aiprod_recipes import recipes  # noqa: E402
from aiprod_recipes.spec import Bucket, Spec, TinyModel  # noqa: E402

PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    # Dense bf16 tensor-core peaks from the vendors' data sheets, matched against
    # torch.cuda.get_device_name() in this order (the first substring that matches).
    ("H200", 989.0),
    ("H100 NVL", 835.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("4090", 165.0),
)
DRY_BUCKET = Bucket(width=64, height=64, frames=9)
DRY_STEPS = 2
GPU_MODEL = "ltx2-19b"


@dataclass
class Result:
    preset: str
    bucket: str
    seconds_per_step: float
    measured_bytes: int
    planned_bytes: int
    flops_per_step: float
    mfu: float | None


def gpu_presets() -> list[str]:
    return [name for name in recipes.names() if name != "tiny"]


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    """The bf16 peak of ``device`` in TFLOP/s: the override, the table, or unknown."""
    if override is not None:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS if key in name), None)


def dry_spec(spec: Spec) -> Spec:
    """The preset on the tiny model, the CPU and a small bucket: its memory settings kept."""
    model = msgspec.structs.replace(spec.model, source=TinyModel(layers=2), device="cpu")
    video = msgspec.structs.replace(spec.video, buckets=[DRY_BUCKET])
    return msgspec.structs.replace(spec, model=model, video=video)


def init_weights(module: torch.nn.Module, seed: int) -> None:
    """Seeded values with the tiny builder's scales (``model.tiny.init_tensor``), drawn on
    the module's device so 19B weights need no trip through the CPU."""
    device = next(module.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("learnable_registers"):
                p.uniform_(-1.0, 1.0, generator=generator)
            elif p.dim() >= 2:
                p.normal_(0.0, 1.0 / math.sqrt(p[0].numel()), generator=generator)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.02, generator=generator)
            else:
                p.normal_(1.0, 0.02, generator=generator)


def build(config: Any, device: torch.device, dtype: torch.dtype
          ) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Transformer and text connectors of ``config``: meta, then seeded on ``device``."""
    from ltx_core.model.transformer.model_configurator import LTXModelConfigurator
    from ltx_core.text_encoders.gemma import EmbeddingsProcessorConfigurator

    from aiprod_recipes.model.gemma_config import gemma_config_applied, with_text_dims

    with torch.device("meta"):
        transformer = LTXModelConfigurator.from_config(config.config)
        with gemma_config_applied(with_text_dims(*config.gemma_text)):
            processor = EmbeddingsProcessorConfigurator.from_config(config.config)
    modules = []
    for seed, module in enumerate((transformer, processor)):
        # The dtype first, while on meta: the device then gets bf16 storage directly.
        module = module.to(dtype).to_empty(device=device)
        init_weights(module, seed)
        modules.append(module)
    return modules[0], modules[1]


def make_batch(load: Any, gemma_hidden: int, fps: float, downscale: int) -> Any:
    """Random latents and text features with the shapes the train stage reads."""
    from aiprod_recipes.model.text import PromptFeatures
    from aiprod_recipes.model.vae import video_latent_shape
    from aiprod_recipes.training.forward import Batch

    b = load.bucket
    g = torch.Generator().manual_seed(0)
    _, frames, h, w = video_latent_shape(b.frames, b.height, b.width)
    n = load.batch_size
    mask = torch.zeros(load.text, dtype=torch.bool)
    mask[-min(load.text, 64):] = True
    text = [PromptFeatures(video=torch.randn(load.text, gemma_hidden, generator=g), audio=None,
                           mask=mask) for _ in range(n)]
    reference = None
    if load.reference:
        reference = torch.randn(n, 128, frames, h // downscale, w // downscale, generator=g)
    audio = torch.randn(n, 8, load.audio, 16, generator=g) if load.audio else None
    return Batch(video=torch.randn(n, 128, frames, h, w, generator=g), text=text, audio=audio,
                 reference=reference, fps=fps, reference_downscale=downscale)


def resident_bytes(*objects: Any) -> int:
    """Bytes of the distinct tensor storages held by modules and optimizers."""
    seen: dict[int, int] = {}

    def add(t: torch.Tensor) -> None:
        inner = getattr(t, "__tensor_flatten__", None)
        if inner is not None and type(t) is not torch.nn.Parameter and type(t) is not torch.Tensor:
            for attr in inner()[0]:
                add(getattr(t, attr))
            return
        storage = t.untyped_storage()
        seen[storage._cdata] = storage.nbytes()

    for obj in objects:
        if isinstance(obj, torch.nn.Module):
            for t in (*obj.parameters(), *obj.buffers()):
                add(t.data if isinstance(t, torch.nn.Parameter) else t)
        elif isinstance(obj, torch.optim.Optimizer):
            for state in obj.state.values():
                for t in state.values():
                    if isinstance(t, torch.Tensor):
                        add(t)
    return sum(seen.values())


def run_preset(name: str, steps: int, device: torch.device, peak: float | None) -> Result:
    from aiprod_recipes.planner.configs import load_model_config
    from aiprod_recipes.planner.estimate import estimate
    from aiprod_recipes.planner.measure import peak_bytes
    from aiprod_recipes.planner.params import inventory
    from aiprod_recipes.planner.workload import largest
    from aiprod_recipes.specio import load_spec
    from aiprod_recipes.training.loop import Sections, setup, train_step

    spec = load_spec(recipes.recipe_path(name))
    on_gpu = device.type == "cuda"
    spec = spec if on_gpu else dry_spec(spec)
    config = load_model_config(spec, GPU_MODEL if on_gpu else None)
    plan = estimate(spec, config, inventory(config), device.type)
    load = largest(spec)
    transformer, processor = build(config, device, getattr(torch, spec.model.dtype))
    state = setup(transformer, processor, Sections.from_spec(spec), "gpu-check", device)
    batch = make_batch(load, config.gemma_text[0], spec.ingest.fps, spec.reference.downscale)
    train_step(state, [batch])  # the first step creates the optimizer state

    def timed() -> float:
        start = time.perf_counter()
        for _ in range(steps):
            train_step(state, [batch])
        if on_gpu:
            torch.cuda.synchronize(device)
        return (time.perf_counter() - start) / steps

    if on_gpu:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        seconds = timed()
        measured = torch.cuda.max_memory_allocated(device)
    else:
        resident = resident_bytes(state.model, state.processor, state.optimizer)
        seconds = 0.0

        def work() -> None:
            nonlocal seconds
            seconds = timed()

        measured = resident + peak_bytes(work, device)
    flops = plan.flops.total
    mfu = flops / seconds / (peak * 1e12) if peak else None
    b = load.bucket
    return Result(name, f"{b.width}x{b.height}x{b.frames}", seconds, measured,
                  plan.allocated_bytes, flops, mfu)


def _size(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def table(results: list[Result], device: str) -> str:
    lines = [f"device: {device}",
             "| preset | bucket | s/step | max allocated | planner | planner / measured "
             "| TFLOP/step | MFU |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        mfu = "-" if r.mfu is None else f"{100 * r.mfu:.1f}%"
        lines.append(f"| {r.preset} | {r.bucket} | {r.seconds_per_step:.3f} | "
                     f"{_size(r.measured_bytes)} | {_size(r.planned_bytes)} | "
                     f"{r.planned_bytes / r.measured_bytes:.2f} | "
                     f"{r.flops_per_step / 1e12:.3g} | {mfu} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=None, help="timed steps per preset")
    p.add_argument("--presets", nargs="*", default=None, help=f"default: {gpu_presets()}")
    p.add_argument("--peak-tflops", type=float, default=None, help="the GPU's bf16 peak")
    p.add_argument("--dry-run", action="store_true", help="the CPU path even with CUDA")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    use_gpu = torch.cuda.is_available() and not args.dry_run
    device = torch.device("cuda" if use_gpu else "cpu")
    steps = args.steps or (5 if use_gpu else DRY_STEPS)
    names = args.presets or gpu_presets()
    unknown = sorted(set(names) - set(recipes.names()))
    if unknown:
        p.error(f"unknown presets {unknown}; known: {recipes.names()}")
    peak = peak_tflops(device, args.peak_tflops)
    label = torch.cuda.get_device_name(device) if use_gpu else "cpu (dry run: tiny model)"
    results = []
    for name in names:
        results.append(run_preset(name, steps, device, peak))
        gc.collect()
        if use_gpu:
            torch.cuda.empty_cache()
        print(f"{name}: {results[-1].seconds_per_step:.3f} s/step", flush=True)
    print(table(results, label))
    if args.json is not None:
        args.json.write_text(json.dumps({"device": label, "results": [asdict(r) for r in results]},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
