"""The evaluation samples: which prompts and conditions, their requests with the eval
seeds, and rendering them to mp4s with thumbnails.

The evaluate stage renders them once with the trained weights; the train stage renders the
very same requests every ``eval.every_steps`` steps with the current weights (same prompts,
conditions, sampler and seeds), so the series during training and the final samples can be
compared frame by frame.

Samples follow the strategy: text-to-video at ``eval.bucket``; image-to-video from a val
clip's first latent frame; IC-LoRA from a val clip's reference latent (at that clip's size).
A sample plays at the frame rate its clips were stored at (the latents manifest carries
it), so neither stage reads the ingest section for it.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
from tqdm import tqdm

from aiprod_recipes.inference.guidance import Guidance
from aiprod_recipes.inference.prompts import encode_prompts
from aiprod_recipes.inference.report import SampleEntry, write_thumbnail
from aiprod_recipes.inference.sampler import Decoded, Request, generate, write_mp4
from aiprod_recipes.model.loader import Components
from aiprod_recipes.model.runtime import ModelPaths
from aiprod_recipes.model.vae import decode_video
from aiprod_recipes.spec import Spec
from aiprod_recipes.store.shards import ShardReader
from aiprod_recipes.training.strategies import SampleCondition, strategy_for, text_condition

__all__ = ["DECODERS", "TEXT_ONLY", "Job", "NoFrameRate", "SampleSet", "conditionable", "plan",
           "prepare", "render", "sample_fps", "sample_name"]

DECODERS = frozenset({"video_decoder", "audio_decoder", "vocoder"})
"""The components that turn sampled latents into video and sound, besides the transformer."""
TEXT_ONLY = "text_to_video"
"""The mode of a sample made from its prompt alone."""


@dataclass(frozen=True)
class Job:
    """One sample to make: its prompt and the val clip it is conditioned on (if any)."""

    prompt: str
    clip: str | None
    mode: str


@dataclass(frozen=True)
class SampleSet:
    """The jobs and their ready requests (prompts encoded, conditions read, seeds set)."""

    jobs: list[Job]
    requests: list[Request]


class NoFrameRate(ValueError):
    """The latents output holds no clip to take a sample's frame rate from."""


def sample_fps(latents: ShardReader, clip: str | None) -> float:
    """A sample's frame rate: its val clip's, else the rate the stored clips share (ingest
    normalises them all to one; were there several, the most common, the lowest on a tie)."""
    if clip is not None and clip in latents.by_item:
        return float(latents.by_item[clip]["fps"])
    rates = Counter(float(row["fps"]) for row in latents.rows)
    if not rates:
        raise NoFrameRate(f"{latents.folder} holds no clip to take a frame rate from")
    return min(rates, key=lambda rate: (-rates[rate], rate))


def sample_name(k: int) -> str:
    """``sample_00``: the file stem of sample ``k`` (the report's and DVCLive's)."""
    return f"sample_{k:02d}"


def plan(spec: Spec, val_items: Sequence[str], captions: dict[str, str],
         conditionable_items: Sequence[str]) -> list[Job]:
    """Up to ``eval.max_samples`` jobs: the spec's prompts, else the val clips' captions.

    Strategies that condition samples on a val clip (``condition_stage``) take the clips
    of ``conditionable_items`` in turn; with none, a job falls back to text-to-video.
    """
    if spec.eval.prompts:
        pairs = [(p, None) for p in spec.eval.prompts]
    else:
        pairs = [(captions[i], i) for i in sorted(val_items) if i in captions]
    pairs = pairs[: spec.eval.max_samples]
    strategy = strategy_for(spec.strategy)
    jobs = []
    for k, (prompt, own) in enumerate(pairs):
        if strategy.condition_stage is None or not conditionable_items:
            jobs.append(Job(prompt, None, TEXT_ONLY))
            continue
        clip = own if own in conditionable_items else conditionable_items[
            k % len(conditionable_items)]
        jobs.append(Job(prompt, clip, strategy.tag))
    return jobs


def conditionable(condition_folder: Path | None, val_items: Sequence[str]) -> list[str]:
    """The val clips whose stored latents (in the strategy's ``condition_stage`` output
    ``condition_folder``) hold a sample condition."""
    if condition_folder is None:
        return []
    have = ShardReader(condition_folder).by_item
    return [i for i in sorted(val_items) if i in have]


def _condition(spec: Spec, condition_folder: Path | None, job: Job) -> SampleCondition:
    """The sample's size and conditioning latents: a val clip's stored condition (its
    first latent frame, its reference), else the eval bucket from the prompt alone."""
    b = spec.eval.bucket
    strategy = strategy_for(spec.strategy)
    if job.clip is None or condition_folder is None:
        return text_condition(b.width, b.height, b.frames)
    stored = ShardReader(condition_folder).item_tensors(job.clip)
    return strategy.sample_condition(stored, b.frames, spec.reference.downscale)


def prepare(spec: Spec, model: ModelPaths, val_items: Sequence[str], captions: dict[str, str],
            condition_folder: Path | None, latents: ShardReader) -> SampleSet:
    """Plan the jobs and build their requests; the text encoder is loaded (and freed) here
    only when there is a job. ``condition_folder``: the output of the strategy's
    ``condition_stage`` (None for text-to-video); ``latents``: the latents output, whose
    rows give each sample its frame rate."""
    jobs = plan(spec, val_items, captions, conditionable(condition_folder, val_items))
    if not jobs:
        return SampleSet([], [])
    features = encode_prompts(spec.model, model, spec.text_encoder,
                              [j.prompt for j in jobs] + [spec.eval.negative_prompt])
    negative = features[-1]
    requests = []
    for k, (job, prompt) in enumerate(zip(jobs, features[:-1], strict=True)):
        cond = _condition(spec, condition_folder, job)
        requests.append(Request(
            prompt=prompt, negative=negative, width=cond.width, height=cond.height,
            frames=cond.frames, fps=sample_fps(latents, job.clip), steps=spec.eval.steps,
            seed=spec.eval.seed + k, guidance=Guidance.from_eval(spec.eval),
            image_latent=cond.image_latent, reference=cond.reference,
            reference_downscale=cond.reference_downscale,
            with_audio=spec.strategy.with_audio))
    return SampleSet(jobs, requests)


def _write_png(path: Path, frame) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path.name


def _conditions(components: Components, request: Request, folder: Path, name: str,
                rel: str) -> dict[str, str]:
    """What the sample was conditioned on, as the report shows it beside the output: the
    first frame (image-to-video) or the reference video (IC-LoRA), decoded from the very
    latents the sampler was given."""
    decoder = components.video_decoder
    if decoder is None:
        return {}
    if request.image_latent is not None:
        frame = decode_video(decoder, request.image_latent, seed=request.seed).numpy()[0]
        return {"condition": f"{rel}/{_write_png(folder / f'{name}_image.png', frame)}"}
    if request.reference is not None:
        frames = decode_video(decoder, request.reference, seed=request.seed).numpy()
        video = folder / f"{name}_reference.mp4"
        write_mp4(video, Decoded(frames, None, 0), request.fps)
        write_thumbnail(folder / f"{name}_reference.png", frames)
        return {"condition": f"{rel}/{name}_reference.png",
                "condition_video": f"{rel}/{video.name}"}
    return {}


def render(components: Components, samples: SampleSet, folder: Path, rel: str,
           with_conditions: bool = True, progress: bool = True,
           on_sample: Callable[[int, Decoded], None] | None = None) -> list[SampleEntry]:
    """Sample, decode and write every request to ``folder/sample_NN.mp4`` with a thumbnail
    (and, ``with_conditions``, what it was conditioned on); paths in the entries are
    relative to the report's folder, ``rel`` being ``folder`` seen from there.
    ``on_sample(k, decoded)`` sees each sample's pixels and sound."""
    entries = []
    pairs = list(zip(samples.jobs, samples.requests, strict=True))
    bar = tqdm(pairs, desc="samples", unit="sample", disable=not progress or not pairs)
    for k, (job, request) in enumerate(bar):
        name = sample_name(k)
        decoded = generate(components, request, folder / f"{name}.mp4", progress=progress)
        write_thumbnail(folder / f"{name}.png", decoded.frames)
        if on_sample is not None:
            on_sample(k, decoded)
        extra = (_conditions(components, request, folder, name, rel)
                 if with_conditions else {})
        entries.append(SampleEntry(f"{rel}/{name}.mp4", f"{rel}/{name}.png", job.prompt,
                                   job.mode, request.seed,
                                   has_audio=decoded.audio is not None, **extra))
        if progress:
            sound = "with sound" if decoded.audio is not None else "no sound"
            bar.write(f"wrote {name}.mp4 ({job.mode}, {sound})", file=sys.stderr)
    return entries
