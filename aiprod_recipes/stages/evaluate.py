"""evaluate: held-out loss of base vs base + adapter, samples with sound, and a report.

Writes ``metrics.json`` (``loss_base``, ``loss_adapter``, ``loss_{base,adapter}_level_<s>``,
``improvement`` = base - adapter, ``num_val_clips``, ``num_samples``), ``samples/*.mp4``
with a PNG thumbnail each, ``report.md`` and ``report.html`` (the same with the training
curves and the samples playable, in one file).

Order of work keeps one large model in memory at a time: the prompts (``eval.prompts``, or
the val clips' captions) are encoded with Gemma, which is then freed; the transformer is
loaded with the adapter attached unfused, so the base is the same weights with the LoRA
layers switched off. The transformer loads as training had it: quantized block by block
with ``quant.base``, the last ``memory.blocks_to_swap`` blocks swapped once the adapter is
attached; Gemma in 8 bit with ``text_encoder.load_in_8bit``.

Samples follow the strategy: text-to-video at ``eval.bucket``, image-to-video from a val
clip's first frame, IC-LoRA from a val clip's reference latent (at that clip's size).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from aiprod_recipes.inference.adapters import attach, check_base
from aiprod_recipes.inference.guidance import Guidance
from aiprod_recipes.inference.html_report import write_html_report
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
from aiprod_recipes.model.errors import ModelSettingError
from aiprod_recipes.model.loader import Components
from aiprod_recipes.model.offload import swap_blocks
from aiprod_recipes.model.runtime import load_model, load_options, model_fingerprint
from aiprod_recipes.model.text import PromptFeatures
from aiprod_recipes.names import (
    ADAPTER_FILE,
    CAPTION,
    EMBED,
    FULL_WEIGHTS_FILE,
    LATENTS,
    LIVE_DIR,
    METRICS_FILE,
    REFERENCE,
    REPORT_FILE,
    REPORT_HTML_FILE,
    SAMPLES_DIR,
    SPLIT,
    TRAIN,
)
from aiprod_recipes.spec import Spec
from aiprod_recipes.stages.caption import read_captions
from aiprod_recipes.stages.context import Report, StageFailed, StagePaths
from aiprod_recipes.stages.split import read_split
from aiprod_recipes.store.shards import ShardReader
from aiprod_recipes.training.data import ClipStore
from aiprod_recipes.training.lora import load_full_weights, read_adapter
from aiprod_recipes.training.strategies import (
    SampleCondition,
    Strategy,
    strategy_for,
    text_condition,
)

TEXT_ONLY = "text_to_video"
"""The mode of a sample made from its prompt alone."""


@dataclass(frozen=True)
class Job:
    """One sample to make: its prompt and the val clip it is conditioned on (if any)."""

    prompt: str
    clip: str | None
    mode: str


def plan(spec: Spec, val_items: list[str], captions: dict[str, str],
         conditionable: list[str]) -> list[Job]:
    """Up to ``eval.max_samples`` jobs: the spec's prompts, else the val clips' captions.

    Strategies that condition samples on a val clip (``condition_stage``) take the clips
    of ``conditionable`` in turn; with none, a job falls back to text-to-video.
    """
    if spec.eval.prompts:
        pairs = [(p, None) for p in spec.eval.prompts]
    else:
        pairs = [(captions[i], i) for i in sorted(val_items) if i in captions]
    pairs = pairs[: spec.eval.max_samples]
    strategy = strategy_for(spec.strategy)
    jobs = []
    for k, (prompt, own) in enumerate(pairs):
        if strategy.condition_stage is None or not conditionable:
            jobs.append(Job(prompt, None, TEXT_ONLY))
            continue
        clip = own if own in conditionable else conditionable[k % len(conditionable)]
        jobs.append(Job(prompt, clip, strategy.tag))
    return jobs


def _condition(spec: Spec, strategy: Strategy, paths: StagePaths, job: Job) -> SampleCondition:
    """The sample's size and conditioning latents: a val clip's stored condition (its
    first latent frame, its reference), else the eval bucket from the prompt alone."""
    b = spec.eval.bucket
    if job.clip is None or strategy.condition_stage is None:
        return text_condition(b.width, b.height, b.frames)
    stored = ShardReader(paths.upstream(strategy.condition_stage)).item_tensors(job.clip)
    return strategy.sample_condition(stored, b.frames, spec.reference.downscale)


def _request(spec: Spec, paths: StagePaths, job: Job, k: int, prompt: PromptFeatures,
             negative: PromptFeatures, fps: float) -> Request:
    cond = _condition(spec, strategy_for(spec.strategy), paths, job)
    return Request(prompt=prompt, negative=negative, width=cond.width, height=cond.height,
                   frames=cond.frames, fps=fps, steps=spec.eval.steps,
                   seed=spec.eval.seed + k, guidance=Guidance.from_eval(spec.eval),
                   image_latent=cond.image_latent, reference=cond.reference,
                   reference_downscale=cond.reference_downscale,
                   with_audio=spec.strategy.with_audio)


def _conditionable(spec: Spec, paths: StagePaths, val_items: list[str]) -> list[str]:
    """The val clips whose stored latents hold the strategy's sample condition."""
    stage = strategy_for(spec.strategy).condition_stage
    if stage is None:
        return []
    have = ShardReader(paths.upstream(stage)).by_item
    return [i for i in sorted(val_items) if i in have]


def _components(spec: Spec, paths: StagePaths, jobs: list[Job]) -> Components:
    want = {"transformer", "embeddings_processor"}
    if jobs:
        want |= {"video_decoder", "audio_decoder", "vocoder"}
    return load_model(spec.model, paths.model, want, load_options(spec))


def _samples(spec: Spec, paths: StagePaths, jobs: list[Job], features: list[PromptFeatures],
             components: Components) -> list[SampleEntry]:
    negative = features[-1]
    entries = []
    for k, (job, prompt) in enumerate(zip(jobs, features[:-1], strict=True)):
        request = _request(spec, paths, job, k, prompt, negative, spec.ingest.fps)
        name = f"sample_{k:02d}"
        decoded = generate(components, request, paths.out / SAMPLES_DIR / f"{name}.mp4")
        write_thumbnail(paths.out / SAMPLES_DIR / f"{name}.png", decoded.frames)
        entries.append(SampleEntry(f"{SAMPLES_DIR}/{name}.mp4", f"{SAMPLES_DIR}/{name}.png",
                                   job.prompt, job.mode, request.seed))
        print(f"evaluate: wrote {name}.mp4 ({job.mode})", file=sys.stderr)
    return entries


def _trained(spec: Spec, paths: StagePaths) -> Path:
    """The train stage's result: the adapter, or the fully fine-tuned transformer."""
    name = FULL_WEIGHTS_FILE if spec.train.mode == "full" else ADAPTER_FILE
    path = paths.upstream(TRAIN) / name
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
        swap_blocks(model, spec.memory.blocks_to_swap)
        return evaluate_losses(model, processor, clips, spec)
    base = spec_losses(model, processor, clips, spec)
    load_full_weights(model, trained)
    return compare_losses(base, spec_losses(model, processor, clips, spec), spec, len(clips))


def run(spec: Spec, paths: StagePaths) -> Report:
    adapter = _trained(spec, paths)
    val_items = read_split(paths.upstream(SPLIT), "val")
    captions = read_captions(paths.upstream(CAPTION))
    jobs = plan(spec, val_items, captions, _conditionable(spec, paths, val_items))
    try:
        features = encode_prompts(spec.model, paths.model, spec.text_encoder,
                                  [j.prompt for j in jobs] + [spec.eval.negative_prompt]
                                  ) if jobs else []
        components = _components(spec, paths, jobs)
    except ModelSettingError as e:
        raise StageFailed(f"evaluate: {e}") from e
    store = ClipStore.open({n: paths.upstream(n) for n in (LATENTS, EMBED, REFERENCE)},
                           strategy_for(spec.strategy), spec.reference.downscale)
    clips = load_val_clips(store, val_items)
    metrics = _metrics(spec, components, adapter, clips)
    samples = _samples(spec, paths, jobs, features, components) if jobs else []
    free(*vars(components).values())
    metrics["num_samples"] = len(samples)
    write_metrics(paths.out / METRICS_FILE, metrics)
    write_report(paths.out / REPORT_FILE, spec, metrics, samples)
    write_html_report(paths.out / REPORT_HTML_FILE, spec, metrics, samples,
                      paths.upstream(TRAIN) / LIVE_DIR)
    _summary(adapter, paths.final, len(samples), metrics)
    return {"samples": len(samples), "loss_base": _rounded(metrics["loss_base"]),
            "loss_adapter": _rounded(metrics["loss_adapter"])}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _summary(adapter: Path, final: Path, samples: int, metrics: dict) -> None:
    """Where the results are, and the number that says whether training helped."""
    base, tuned = metrics["loss_base"], metrics["loss_adapter"]
    loss = ("no val clips" if base is None
            else f"base {base:.4f} -> trained {tuned:.4f} ({base - tuned:+.4f})")
    print("\nResults\n"
          f"  trained:       {adapter}\n"
          f"  samples:       {final / SAMPLES_DIR}/ ({samples} mp4 with sound)\n"
          f"  report:        {final / REPORT_FILE}\n"
          f"  held-out loss: {loss}\n", file=sys.stderr)
