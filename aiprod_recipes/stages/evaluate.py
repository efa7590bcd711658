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
attached; Gemma in 8 bit with ``text_encoder.load_in_8bit``. The samples
(``inference.samples``) are the ones the train stage renders every ``eval.every_steps``
steps, with the same prompts, conditions and seeds.

What evaluate reads decides when DVC reruns it, so it takes from its inputs what they
already carry instead of declaring spec sections for it: a sample plays at the frame rate
its clips were stored at (the latents manifest), and the training settings (full weights
or an adapter, and the table in the reports) come from the train output's provenance. Its
params are ``eval``, ``strategy``, ``quant``, ``text_encoder``, ``reference.downscale`` and
``model``; a change to the training sections reaches it through the train output.
``memory.blocks_to_swap`` is read but not declared: it moves weights, never changes a
result.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from aiprod_recipes.inference.adapters import attach, check_base
from aiprod_recipes.inference.html_report import write_html_report
from aiprod_recipes.inference.metrics import (
    compare_losses,
    evaluate_losses,
    load_val_clips,
    spec_losses,
)
from aiprod_recipes.inference.report import SampleEntry, write_metrics, write_report
from aiprod_recipes.inference.sampler import free
from aiprod_recipes.inference.samples import DECODERS, NoFrameRate, SampleSet, prepare, render
from aiprod_recipes.model.errors import ModelSettingError
from aiprod_recipes.model.loader import Components
from aiprod_recipes.model.offload import swap_blocks
from aiprod_recipes.model.runtime import load_model, load_options, model_fingerprint
from aiprod_recipes.names import (
    ADAPTER_FILE,
    CAPTION,
    EMBED,
    FULL_WEIGHTS_FILE,
    LATENTS,
    METRICS_FILE,
    PROVENANCE_FILE,
    REFERENCE,
    REPORT_FILE,
    REPORT_HTML_FILE,
    SAMPLES_DIR,
    SPLIT,
    TRAIN,
    TRAIN_LIVE,
)
from aiprod_recipes.spec import Spec
from aiprod_recipes.stages.caption import read_captions
from aiprod_recipes.stages.context import Report, StageFailed, StagePaths
from aiprod_recipes.stages.split import read_split
from aiprod_recipes.store.shards import ShardReader
from aiprod_recipes.training.data import ClipStore
from aiprod_recipes.training.lora import load_full_weights, read_adapter
from aiprod_recipes.training.strategies import strategy_for


def sample_set(spec: Spec, paths: StagePaths, val_items: list[str]) -> SampleSet:
    """The eval samples' jobs and requests (prompts encoded, conditions read)."""
    stage = strategy_for(spec.strategy).condition_stage
    return prepare(spec, paths.model, val_items, read_captions(paths.upstream(CAPTION)),
                   paths.upstream(stage) if stage is not None else None,
                   ShardReader(paths.upstream(LATENTS)))


def training_record(train_dir: Path) -> dict[str, Any]:
    """The spec sections the trained weights were made with (the train output's
    provenance)."""
    path = train_dir / PROVENANCE_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))["spec"]
    except (OSError, ValueError, KeyError) as e:
        raise StageFailed(f"evaluate: cannot read the training settings from {path} ({e}); "
                          "run the train stage") from e


def _components(spec: Spec, paths: StagePaths, samples: SampleSet) -> Components:
    want = {"transformer", "embeddings_processor"}
    if samples.jobs:
        want |= DECODERS
    return load_model(spec.model, paths.model, want, load_options(spec))


def _trained(mode: str, paths: StagePaths) -> Path:
    """The train stage's result: the adapter, or the fully fine-tuned transformer."""
    name = FULL_WEIGHTS_FILE if mode == "full" else ADAPTER_FILE
    path = paths.upstream(TRAIN) / name
    if not path.exists():
        raise StageFailed(f"evaluate: no {name} in {path.parent} (run the train stage first)")
    if mode == "lora":
        try:
            check_base(read_adapter(path)[1], model_fingerprint(paths.model), path,
                       strict=True)
        except ValueError as e:
            raise StageFailed(f"evaluate: {e}") from e
    return path


def _metrics(spec: Spec, mode: str, components: Components, trained: Path,
             clips: list) -> dict:
    """Held-out losses of the base and of the trained model; leaves the trained model in
    ``components.transformer`` for sampling."""
    model, processor = components.transformer, components.embeddings_processor
    if mode == "lora":
        attach(model, trained)
        swap_blocks(model, spec.memory.blocks_to_swap)
        return evaluate_losses(model, processor, clips, spec)
    base = spec_losses(model, processor, clips, spec)
    load_full_weights(model, trained)
    return compare_losses(base, spec_losses(model, processor, clips, spec), spec, len(clips))


def run(spec: Spec, paths: StagePaths) -> Report:
    training = training_record(paths.upstream(TRAIN))
    mode = training["train"]["mode"]
    adapter = _trained(mode, paths)
    val_items = read_split(paths.upstream(SPLIT), "val")
    try:
        samples = sample_set(spec, paths, val_items)
        components = _components(spec, paths, samples)
    except (ModelSettingError, NoFrameRate) as e:
        raise StageFailed(f"evaluate: {e}") from e
    store = ClipStore.open({n: paths.upstream(n) for n in (LATENTS, EMBED, REFERENCE)},
                           strategy_for(spec.strategy), spec.reference.downscale)
    clips = load_val_clips(store, val_items)
    metrics = _metrics(spec, mode, components, adapter, clips)
    entries = render(components, samples, paths.out / SAMPLES_DIR, SAMPLES_DIR)
    free(*vars(components).values())
    metrics["num_samples"] = len(entries)
    write_metrics(paths.out / METRICS_FILE, metrics)
    write_report(paths.out / REPORT_FILE, spec, training, metrics, entries)
    write_html_report(paths.out / REPORT_HTML_FILE, spec, training, metrics, entries,
                      paths.upstream(TRAIN_LIVE))
    _summary(adapter, paths.final, entries, metrics)
    return {"samples": len(entries), "loss_base": _rounded(metrics["loss_base"]),
            "loss_adapter": _rounded(metrics["loss_adapter"])}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _summary(adapter: Path, final: Path, entries: list[SampleEntry], metrics: dict) -> None:
    """Where the results are, and the number that says whether training helped."""
    base, tuned = metrics["loss_base"], metrics["loss_adapter"]
    loss = ("no val clips" if base is None
            else f"base {base:.4f} -> trained {tuned:.4f} ({base - tuned:+.4f})")
    sound = sum(e.has_audio for e in entries)
    print("\nResults\n"
          f"  trained:       {adapter}\n"
          f"  samples:       {final / SAMPLES_DIR}/ ({len(entries)} mp4, {sound} with sound)\n"
          f"  report:        {final / REPORT_FILE}, {final / REPORT_HTML_FILE}\n"
          f"  held-out loss: {loss}\n", file=sys.stderr)
