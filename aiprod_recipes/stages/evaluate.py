"""evaluate: held-out loss of base vs base + adapter, samples with sound, and a report.

Writes ``metrics.json`` (``loss_base``, ``loss_adapter``, ``loss_{base,adapter}_level_<s>``,
``improvement`` = base - adapter, ``num_val_clips``, ``num_samples``), ``samples/*.mp4``
with a PNG thumbnail each, and ``report.md``.

Order of work keeps one large model in memory at a time: the prompts (``eval.prompts``, or
the val clips' captions) are encoded with Gemma, which is then freed; the transformer is
loaded with the adapter attached unfused, so the base is the same weights with the LoRA
layers switched off. Samples follow the strategy: text-to-video at ``eval.bucket``,
image-to-video from a val clip's first frame, IC-LoRA from a val clip's reference latent
(at that clip's size).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from aiprod_recipes.inference.adapters import attach, check_base
from aiprod_recipes.inference.guidance import Guidance
from aiprod_recipes.inference.metrics import (
    compare_losses,
    evaluate_losses,
    load_val_clips,
    spec_losses,
)
from aiprod_recipes.inference.prompts import encode_prompts
from aiprod_recipes.inference.report import (
    SampleEntry,
    write_metrics,
    write_report,
    write_thumbnail,
)
from aiprod_recipes.inference.sampler import Request, free, generate
from aiprod_recipes.model.loader import Components
from aiprod_recipes.model.text import PromptFeatures
from aiprod_recipes.registry import STAGES_DIR
from aiprod_recipes.runtime import Report, StageFailed, StagePaths
from aiprod_recipes.spec import ImageToVideo, Spec, VideoToVideo
from aiprod_recipes.stages.caption import read_captions
from aiprod_recipes.stages.common import load_model, model_fingerprint
from aiprod_recipes.stages.split import read_split
from aiprod_recipes.stages.train import ADAPTER, FULL_WEIGHTS
from aiprod_recipes.store.shards import ShardReader
from aiprod_recipes.training.lora import FULL_PREFIX, read_adapter

METRICS = "metrics.json"
REPORT = "report.md"
SAMPLES = "samples"


@dataclass(frozen=True)
class Job:
    """One sample to make: its prompt and the val clip it is conditioned on (if any)."""

    prompt: str
    clip: str | None
    mode: str


def plan(spec: Spec, val_items: list[str], captions: dict[str, str],
         conditionable: list[str]) -> list[Job]:
    """Up to ``eval.max_samples`` jobs: the spec's prompts, else the val clips' captions.

    Image-to-video and IC-LoRA jobs take val clips in turn from ``conditionable`` (the val
    clips with what the mode needs); with none, a job falls back to text-to-video.
    """
    if spec.eval.prompts:
        pairs = [(p, None) for p in spec.eval.prompts]
    else:
        pairs = [(captions[i], i) for i in sorted(val_items) if i in captions]
    pairs = pairs[: spec.eval.max_samples]
    wanted = {ImageToVideo: "image_to_video", VideoToVideo: "video_to_video"}.get(
        type(spec.strategy))
    jobs = []
    for k, (prompt, own) in enumerate(pairs):
        if wanted is None or not conditionable:
            jobs.append(Job(prompt, None, "text_to_video"))
            continue
        clip = own if own in conditionable else conditionable[k % len(conditionable)]
        jobs.append(Job(prompt, clip, wanted))
    return jobs


def _request(spec: Spec, paths: StagePaths, job: Job, k: int, prompt: PromptFeatures,
             negative: PromptFeatures) -> Request:
    b = spec.eval.bucket
    common = dict(prompt=prompt, negative=negative, fps=spec.ingest.fps, steps=spec.eval.steps,
                  seed=spec.eval.seed + k, guidance=Guidance.from_eval(spec.eval),
                  with_audio=spec.strategy.with_audio)
    if job.mode == "image_to_video" and job.clip is not None:
        # The condition is the val clip's first latent frame, exactly what training
        # conditions on; the sample takes that clip's bucket size.
        latent = ShardReader(paths.upstream("latents")).item_tensors(job.clip)["video"].float()
        _, _, h, w = latent.shape
        return Request(width=w * 32, height=h * 32, frames=b.frames,
                       image_latent=latent[:, :1], **common)
    if job.mode == "video_to_video" and job.clip is not None:
        ref = ShardReader(paths.upstream("reference")).item_tensors(job.clip)["video"].float()
        d = spec.reference.downscale
        _, f, h, w = ref.shape
        return Request(width=w * 32 * d, height=h * 32 * d, frames=8 * (f - 1) + 1,
                       reference=ref, reference_downscale=d, **common)
    return Request(width=b.width, height=b.height, frames=b.frames, **common)


def _conditionable(spec: Spec, paths: StagePaths, val_items: list[str]) -> list[str]:
    if isinstance(spec.strategy, ImageToVideo):
        have = ShardReader(paths.upstream("latents")).by_item
    elif isinstance(spec.strategy, VideoToVideo):
        have = ShardReader(paths.upstream("reference")).by_item
    else:
        return []
    return [i for i in sorted(val_items) if i in have]


def _components(spec: Spec, paths: StagePaths, jobs: list[Job]) -> Components:
    want = {"transformer", "embeddings_processor"}
    if jobs:
        want |= {"video_decoder", "audio_decoder", "vocoder"}
    return load_model(spec.model, paths.model, want)


def _samples(spec: Spec, paths: StagePaths, jobs: list[Job], features: list[PromptFeatures],
             components: Components) -> list[SampleEntry]:
    negative = features[-1]
    entries = []
    for k, (job, prompt) in enumerate(zip(jobs, features[:-1], strict=True)):
        request = _request(spec, paths, job, k, prompt, negative)
        name = f"sample_{k:02d}"
        decoded = generate(components, request, paths.out / SAMPLES / f"{name}.mp4")
        write_thumbnail(paths.out / SAMPLES / f"{name}.png", decoded.frames)
        entries.append(SampleEntry(f"{SAMPLES}/{name}.mp4", f"{SAMPLES}/{name}.png",
                                   job.prompt, job.mode, request.seed))
        print(f"evaluate: wrote {name}.mp4 ({job.mode})", file=sys.stderr)
    return entries


def _trained(spec: Spec, paths: StagePaths) -> Path:
    """The train stage's result: the adapter, or the fully fine-tuned transformer."""
    name = FULL_WEIGHTS if spec.train.mode == "full" else ADAPTER
    path = paths.upstream("train") / name
    if not path.exists():
        raise StageFailed(f"evaluate: no {name} in {path.parent} (run the train stage first)")
    if spec.train.mode == "lora":
        try:
            check_base(read_adapter(path)[1], model_fingerprint(paths.model), path,
                       strict=True)
        except ValueError as e:
            raise StageFailed(f"evaluate: {e}") from e
    return path


def _metrics(spec: Spec, components: Components, trained: Path,
             clips: list) -> dict:
    """Held-out losses of the base and of the trained model; leaves the trained model in
    ``components.transformer`` for sampling."""
    model, processor = components.transformer, components.embeddings_processor
    if spec.train.mode == "lora":
        attach(model, trained)
        return evaluate_losses(model, processor, clips, spec)
    base = spec_losses(model, processor, clips, spec)
    load_full_weights(model, trained)
    return compare_losses(base, spec_losses(model, processor, clips, spec), spec, len(clips))


def run(spec: Spec, paths: StagePaths) -> Report:
    adapter = _trained(spec, paths)
    val_items = read_split(paths.upstream("split"), "val")
    captions = read_captions(paths.upstream("caption"))
    jobs = plan(spec, val_items, captions, _conditionable(spec, paths, val_items))
    features = encode_prompts(spec.model, paths.model, spec.text_encoder,
                              [j.prompt for j in jobs] + [spec.eval.negative_prompt]
                              ) if jobs else []

    components = _components(spec, paths, jobs)
    clips = load_val_clips(spec, val_items, paths.upstream("latents"), paths.upstream("embed"),
                           paths.upstream("reference"))
    metrics = _metrics(spec, components, adapter, clips)
    samples = _samples(spec, paths, jobs, features, components) if jobs else []
    free(*vars(components).values())
    metrics["num_samples"] = len(samples)
    write_metrics(paths.out / METRICS, metrics)
    write_report(paths.out / REPORT, spec, metrics, samples)
    _summary(adapter, len(samples), metrics)
    return {"samples": len(samples), "loss_base": _rounded(metrics["loss_base"]),
            "loss_adapter": _rounded(metrics["loss_adapter"])}


def load_full_weights(model: torch.nn.Module, path: Path) -> None:
    """Load fully fine-tuned transformer weights (checkpoint key layout) into ``model``."""
    from safetensors.torch import load_file

    state = {k.removeprefix(FULL_PREFIX): v for k, v in load_file(str(path)).items()}
    param = next(model.parameters())
    model.load_state_dict({k: v.to(param.dtype) for k, v in state.items()}, strict=True)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _summary(adapter: Path, samples: int, metrics: dict) -> None:
    """Where the results are, and the number that says whether training helped."""
    final = STAGES_DIR / "evaluate"
    base, tuned = metrics["loss_base"], metrics["loss_adapter"]
    loss = ("no val clips" if base is None
            else f"base {base:.4f} -> trained {tuned:.4f} ({base - tuned:+.4f})")
    print("\nResults\n"
          f"  trained:       {adapter}\n"
          f"  samples:       {final / SAMPLES}/ ({samples} mp4 with sound)\n"
          f"  report:        {final / REPORT}\n"
          f"  held-out loss: {loss}\n", file=sys.stderr)
