"""train: latents + text features -> a LoRA adapter (or fully fine-tuned weights), with
DVCLive metrics and plots written while it runs.

Resumable checkpoints live beside the outputs in a hidden folder that DVC does not track
(``data/stages/.train-checkpoints``), tied to a resume key of everything that shapes
training: a killed stage resumes on the next ``dvc repro``; a run with other params starts
fresh. The metric history is kept with the checkpoint, so a resumed run logs each step
exactly once.

While it runs, the stage writes DVCLive's files into the persisted live folder
(``training.live``) at every log step, renders the eval samples and the held-out loss every
``eval.every_steps`` steps (``inference.periodic``), saves the adapters to keep
(``training.kept``) and feeds TensorBoard / W&B (``training.trackers``). With
``lora.init_from`` the LoRA starts from an existing adapter (``training.init_from``).

With ``train.accelerate_config`` the runtime starts this stage in every process of that
config; each trains on its own share of the batches and only the main one writes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from aiprod_recipes.model.errors import ModelSettingError
from aiprod_recipes.model.header import checkpoint_config
from aiprod_recipes.model.runtime import (
    load_model,
    load_options,
    model_fingerprint,
    resolve_device,
)
from aiprod_recipes.names import (
    ADAPTER_FILE,
    CAPTION,
    EMBED,
    FULL_WEIGHTS_FILE,
    KEPT_CHECKPOINTS_DIR,
    LATENTS,
    MANIFEST_FILE,
    REFERENCE,
    SPLIT,
    TRACKERS_DIR,
    TRAIN_CHECKPOINTS_DIR,
    TRAIN_LIVE_DIR,
    TRAIN_SPLIT_FILE,
)
from aiprod_recipes.spec import Spec
from aiprod_recipes.specio import section_values
from aiprod_recipes.stages.caption import read_captions
from aiprod_recipes.stages.context import Report, StageFailed, StagePaths
from aiprod_recipes.stages.split import read_split
from aiprod_recipes.store.shards import canonical_json
from aiprod_recipes.training import distributed
from aiprod_recipes.training.data import NoTrainingData, TrainData
from aiprod_recipes.training.kept import KeptCheckpoints
from aiprod_recipes.training.live import HISTORY_FILE, LiveLog
from aiprod_recipes.training.strategies import strategy_for

if TYPE_CHECKING:
    from aiprod_recipes.inference.periodic import PeriodicValidation

KEPT_WORK_DIR = "kept"
"""The kept adapters of a running training, beside its resumable checkpoint."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def training_resume_key(spec: Spec, paths: StagePaths, init: Path | None = None) -> str:
    """Everything that shapes training: its params, the base model, the data it reads (and
    the adapter it starts from)."""
    from aiprod_recipes.training.checkpoint import resume_key

    data = {name: _sha256(paths.upstream(name) / MANIFEST_FILE)
            for name in (LATENTS, EMBED, REFERENCE)}
    data[SPLIT] = _sha256(paths.upstream(SPLIT) / TRAIN_SPLIT_FILE)
    if init is not None:
        data["init_from"] = _sha256(init)
    return resume_key({"spec": section_values(spec, paths.sections), "data": data,
                       "model": model_fingerprint(paths.model)})


def _init_from(spec: Spec, paths: StagePaths) -> Path | None:
    """The adapter ``lora.init_from`` names, checked before any model is loaded: it exists
    (in the local cache for a Hub id), fits the spec's rank and targets, and was trained on
    this base."""
    if not spec.lora.init_from:
        return None
    from aiprod_recipes.inference.adapters import check_base
    from aiprod_recipes.training.init_from import check_shape, resolve
    from aiprod_recipes.training.lora import read_adapter

    try:
        path = resolve(spec.lora.init_from)
        meta = read_adapter(path)[1]
        check_shape(meta, spec.lora, path)
        check_base(meta, model_fingerprint(paths.model), path, strict=True)
    except ValueError as e:
        raise StageFailed(f"train: {e}" if "lora.init_from" in str(e)
                          else f"train: lora.init_from: {e}") from e
    return path


def _loader(spec: Spec, init: Path | None) -> Any:
    """What puts the ``lora.init_from`` adapter into the freshly added LoRA layers (before
    the model is placed or sharded; a resumed run then restores its checkpoint over it)."""
    if init is None:
        return None
    from aiprod_recipes.training.init_from import load_into

    return lambda model: load_into(model, init, spec.lora)


def _periodic_validation(spec: Spec, paths: StagePaths) -> PeriodicValidation | None:
    """What ``eval.every_steps`` needs, prepared before the transformer is loaded (the
    text encoder comes and goes first); None when it is off. Only the main process (rank 0
    under accelerate) renders, so only it reads the prompts and clips."""
    if not spec.eval.every_steps:
        return None
    from aiprod_recipes.inference.metrics import load_val_clips
    from aiprod_recipes.inference.periodic import PeriodicValidation
    from aiprod_recipes.inference.samples import SampleSet, prepare
    from aiprod_recipes.training.data import ClipStore

    strategy = strategy_for(spec.strategy)
    if not distributed.is_main_before_setup():
        return PeriodicValidation(spec, SampleSet([], []), [])
    val_items = read_split(paths.upstream(SPLIT), "val")
    stage = strategy.condition_stage
    store = ClipStore.open({n: paths.upstream(n) for n in (LATENTS, EMBED, REFERENCE)},
                           strategy, spec.reference.downscale)
    samples = prepare(spec, paths.model, val_items, read_captions(paths.upstream(CAPTION)),
                      paths.upstream(stage) if stage is not None else None, store.latents)
    return PeriodicValidation(spec, samples, load_val_clips(store, val_items))


def _train_data(spec: Spec, paths: StagePaths) -> TrainData:
    items = read_split(paths.upstream(SPLIT), "train")
    folders = {n: paths.upstream(n) for n in (LATENTS, EMBED, REFERENCE)}
    return TrainData.open(items, folders, spec.train.batch_size, spec.train.seed,
                          strategy_for(spec.strategy), spec.reference.downscale)


def _gather(spec: Spec, state: Any) -> dict[str, Any]:
    """The weights to save, in full on the main process: what trains (the LoRA) or the whole
    state dict. Every process calls this, since sharded (FSDP) weights are gathered."""
    from aiprod_recipes.training.sharding import gathered

    main = state.accelerator.is_main_process
    if spec.train.mode == "full":
        model = state.accelerator.unwrap_model(state.model)
        return gathered(model.state_dict(), keep=main)
    return gathered(state.params, keep=main)


def _write_weights(spec: Spec, paths: StagePaths, model: Any, dest: Path,
                   weights: dict[str, Any]) -> None:
    """The adapter (with its metadata header) or the full weights to ``dest``: ``weights``
    from ``_gather``, laid out by ``model``'s LoRA layers."""
    from aiprod_recipes.training.lora import (
        FULL_FORMAT,
        AdapterMeta,
        save_adapter,
        save_full_weights,
    )

    if spec.train.mode == "full":
        header = {"format": FULL_FORMAT,
                  "config": json.dumps(checkpoint_config(paths.model.checkpoint))}
        save_full_weights(model, dest, header, weights)
        return
    meta = AdapterMeta(
        rank=spec.lora.rank, alpha=spec.lora.alpha,
        target_modules=tuple(spec.lora.target_modules),
        strategy=str(spec.strategy.__struct_config__.tag),
        base_fingerprint=model_fingerprint(paths.model),
        spec_hash=hashlib.sha256(canonical_json(
            section_values(spec, paths.sections)).encode()).hexdigest()[:16],
    )
    save_adapter(model, dest, meta, weights=weights)


def _val_losses(live: LiveLog | None) -> dict[int, float]:
    from aiprod_recipes.inference.periodic import VAL_LOSS

    return {} if live is None else {r["step"]: r[VAL_LOSS] for r in live.rows(VAL_LOSS)}


def _start_trackers(spec: Spec, paths: StagePaths, accelerator: Any, run_name: str) -> None:
    from aiprod_recipes.training import trackers

    try:
        trackers.start(accelerator, TRACKERS_DIR, run_name, section_values(spec, paths.sections))
    except Exception as e:  # a tracker's own start-up error (login, network), said in a line
        raise StageFailed(f"train: train.trackers = {list(spec.train.trackers)} could not "
                          f"start: {type(e).__name__}: {e} (W&B without network: "
                          "WANDB_MODE=offline)") from e


@dataclass
class _Hooks:
    """What the loop calls while it trains: the metric log (DVCLive, trackers, the bar),
    validation and kept adapters before a step's checkpoint, pruning after it. ``live`` and
    ``kept`` exist in the main process only; validation runs there while the others wait."""

    spec: Spec
    paths: StagePaths
    accelerator: Any
    live: LiveLog | None
    kept: KeptCheckpoints | None
    validation: PeriodicValidation | None
    bar: Any

    def log(self, step: int, metrics: dict[str, float]) -> None:
        row = {f"train/{k}": v for k, v in metrics.items()}
        if self.live is not None:
            self.live.log(step, row)
        self.accelerator.log(row, step=step)
        self.bar.update(step - self.bar.n)
        self.bar.set_postfix(loss=f"{metrics['loss']:.4f}")

    def on_step(self, state: Any) -> None:
        validated = self.validation is not None and self.validation.due(state.step)
        model = self.accelerator.unwrap_model(state.model)
        if validated and self.live is not None and self.validation is not None:
            metrics = self.validation.run(model, state.processor, state.step, self.live)
            self.accelerator.log(metrics, step=state.step)
        every = self.spec.train.checkpoint_every
        if self.spec.train.keep_checkpoints and (validated or (every and state.step % every
                                                                == 0)):
            weights = _gather(self.spec, state)  # every process: a collective under FSDP
            if self.kept is not None:
                self.kept.save(state.step, lambda p: _write_weights(self.spec, self.paths,
                                                                    model, p, weights))
        if validated:
            self.accelerator.wait_for_everyone()

    def on_checkpoint(self, state: Any) -> None:
        if self.kept is not None:
            self.kept.prune(_val_losses(self.live))


def run(spec: Spec, paths: StagePaths) -> Report:
    """Train in this process (one of several under accelerate: only the main one writes)."""
    from aiprod_recipes.training import loop, trackers

    try:
        data = _train_data(spec, paths)
        trackers.check_available(spec.train.trackers)
    except (NoTrainingData, trackers.TrackerUnavailable) as e:
        raise StageFailed(f"train: {e}") from e
    init = _init_from(spec, paths)
    key = training_resume_key(spec, paths, init)
    root = TRAIN_CHECKPOINTS_DIR / key[:16]
    run_name = trackers.run_name(key)
    try:
        validation = _periodic_validation(spec, paths)
        want = {"transformer", "embeddings_processor"} | (validation.wants if validation
                                                          else set())
        components = load_model(spec.model, paths.model, want, load_options(spec))
        if validation is not None:
            validation.decoders = components
        state = loop.setup(components.transformer, components.embeddings_processor,
                           loop.Sections.from_spec(spec), key, resolve_device(spec.model.device),
                           log_with=spec.train.trackers,
                           project_config=trackers.project_config(TRACKERS_DIR, run_name),
                           init_lora=_loader(spec, init))
    except ModelSettingError as e:
        raise StageFailed(f"train: {e}") from e
    accelerator = state.accelerator
    main = accelerator.is_main_process
    if validation is not None and distributed.shards_model(accelerator):
        raise StageFailed("train: eval.every_steps renders samples with the whole model in "
                          "the main process, which this accelerate config shards; use DDP "
                          "or set eval.every_steps = 0")
    if main:
        _remove_stale_checkpoints(root)
    accelerator.wait_for_everyone()
    resumed = loop.try_resume(state, root)
    rank, world = accelerator.process_index, accelerator.num_processes
    distributed.decorrelate(state.generators, rank, state.step)
    if resumed and main:
        print(f"train: resuming at step {state.step} from {root}", file=sys.stderr)
    live = LiveLog(TRAIN_LIVE_DIR, root / HISTORY_FILE, state.step) if main else None
    kept = (KeptCheckpoints(root / KEPT_WORK_DIR, spec.train.keep_checkpoints, state.step)
            if main and spec.train.keep_checkpoints else None)
    _start_trackers(spec, paths, accelerator, run_name)
    hooks = _Hooks(spec, paths, accelerator, live, kept, validation,
                   tqdm(total=spec.train.steps, initial=state.step, desc="train", unit="step",
                        disable=not main))
    try:
        loop.run(state, lambda i: data.batch_at(i * world + rank), log=hooks.log,
                 checkpoint_root=root, resume=False, on_step=hooks.on_step,
                 on_checkpoint=hooks.on_checkpoint)
    except loop.NonFiniteLoss as e:
        raise StageFailed(f"train: {e}") from e
    finally:
        hooks.bar.close()
    weights = _gather(spec, state)
    if not main or live is None:
        accelerator.wait_for_everyone()
        accelerator.end_training()  # closes the trackers, then the process group: last
        return {}
    name = FULL_WEIGHTS_FILE if spec.train.mode == "full" else ADAPTER_FILE
    _write_weights(spec, paths, accelerator.unwrap_model(state.model), paths.out / name,
                   weights)
    report: Report = {}
    if kept is not None:
        index = kept.publish(paths.out / KEPT_CHECKPOINTS_DIR, _val_losses(live))
        report = {"kept": len(index["checkpoints"]), "best": index["best"]}
    live.close()
    rows = live.rows("train/")
    shutil.rmtree(root, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    last = rows[-1] if rows else {}
    return {"steps": state.step, "resumed": resumed, "clips": len(data.items),
            "processes": world, "final_loss": round(last.get("train/loss", float("nan")), 5),
            "output": name, **report}


def _remove_stale_checkpoints(keep: Path) -> None:
    """Checkpoints of runs with other params can never be resumed: free their space."""
    if TRAIN_CHECKPOINTS_DIR.exists():
        for stale in TRAIN_CHECKPOINTS_DIR.iterdir():
            if stale != keep:
                shutil.rmtree(stale, ignore_errors=True)
