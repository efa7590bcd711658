"""train: latents + text features -> a LoRA adapter (or fully fine-tuned weights), with
DVCLive metrics and plots.

Resumable checkpoints live beside the outputs in a hidden folder that DVC does not track
(``data/stages/.train-checkpoints``), tied to a resume key of everything that shapes
training: a killed stage resumes on the next ``dvc repro``; a run with other params starts
fresh. Metrics are kept with the checkpoint, so a resumed run logs each step exactly once.

With ``train.accelerate_config`` the runtime starts this stage in every process of that
config; each trains on its own share of the batches and only the main one writes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

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
    EMBED,
    FULL_WEIGHTS_FILE,
    LATENTS,
    LIVE_DIR,
    MANIFEST_FILE,
    REFERENCE,
    SPLIT,
    TRAIN_CHECKPOINTS_DIR,
    TRAIN_SPLIT_FILE,
)
from aiprod_recipes.spec import Spec
from aiprod_recipes.specio import section_values
from aiprod_recipes.stages.context import Report, StageFailed, StagePaths
from aiprod_recipes.stages.split import read_split
from aiprod_recipes.store.shards import canonical_json
from aiprod_recipes.training import distributed
from aiprod_recipes.training.data import NoTrainingData, TrainData
from aiprod_recipes.training.strategies import strategy_for

HISTORY_FILE = "history.jsonl"
"""Logged metrics kept with the checkpoints (replayed into DVCLive at the end)."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def training_resume_key(spec: Spec, paths: StagePaths) -> str:
    """Everything that shapes training: its sections, the base model, the data it reads."""
    from aiprod_recipes.training.checkpoint import resume_key

    data = {name: _sha256(paths.upstream(name) / MANIFEST_FILE)
            for name in (LATENTS, EMBED, REFERENCE)}
    data[SPLIT] = _sha256(paths.upstream(SPLIT) / TRAIN_SPLIT_FILE)
    return resume_key({"spec": section_values(spec, paths.sections), "data": data,
                       "model": model_fingerprint(paths.model)})


class History:
    """Logged metrics, one JSON line per step, kept with the checkpoints."""

    def __init__(self, path: Path, resumed_step: int) -> None:
        self.path = path
        rows = []
        if resumed_step and path.exists():
            rows = [json.loads(line) for line in path.read_text().splitlines() if line]
        self.rows = [r for r in rows if r["step"] <= resumed_step]
        self._write()

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.rows.append({"step": step, **metrics})
        self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(canonical_json(r) + "\n" for r in self.rows))


def write_live(rows: list[dict[str, Any]], folder: Path) -> None:
    """Replay the metric history through DVCLive: metrics.json and plots/metrics/*.tsv."""
    from dvclive import Live

    with Live(str(folder), dvcyaml=None, save_dvc_exp=False) as live:
        for row in rows:
            live.step = row["step"]
            for name, value in row.items():
                if name != "step":
                    live.log_metric(f"train/{name}", value)
            live.make_summary()


def _train_data(spec: Spec, paths: StagePaths) -> TrainData:
    items = read_split(paths.upstream(SPLIT), "train")
    folders = {n: paths.upstream(n) for n in (LATENTS, EMBED, REFERENCE)}
    return TrainData.open(items, folders, spec.train.batch_size, spec.train.seed,
                          strategy_for(spec.strategy), spec.reference.downscale)


def _gather_result(spec: Spec, state: Any) -> dict[str, Any]:
    """The weights to save, in full on the main process: what trains (the LoRA) or the whole
    state dict. Every process calls this, since sharded (FSDP) weights are gathered."""
    from aiprod_recipes.training.sharding import gathered

    main = state.accelerator.is_main_process
    if spec.train.mode == "full":
        model = state.accelerator.unwrap_model(state.model)
        return gathered(model.state_dict(), keep=main)
    return gathered(state.params, keep=main)


def _save_result(spec: Spec, paths: StagePaths, state: Any, weights: dict[str, Any]) -> str:
    from aiprod_recipes.training.lora import AdapterMeta, save_adapter, save_full_weights

    model = state.accelerator.unwrap_model(state.model)
    if spec.train.mode == "full":
        header = {"format": "aiprod-recipes/full-v1",
                  "config": json.dumps(checkpoint_config(paths.model.checkpoint))}
        save_full_weights(model, paths.out / FULL_WEIGHTS_FILE, header, weights)
        return FULL_WEIGHTS_FILE
    meta = AdapterMeta(
        rank=spec.lora.rank, alpha=spec.lora.alpha,
        target_modules=tuple(spec.lora.target_modules),
        strategy=str(spec.strategy.__struct_config__.tag),
        base_fingerprint=model_fingerprint(paths.model),
        spec_hash=hashlib.sha256(canonical_json(
            section_values(spec, paths.sections)).encode()).hexdigest()[:16],
    )
    save_adapter(model, paths.out / ADAPTER_FILE, meta, weights=weights)
    return ADAPTER_FILE


def run(spec: Spec, paths: StagePaths) -> Report:
    """Train in this process (one of several under accelerate: only the main one writes)."""
    from aiprod_recipes.training import loop

    try:
        data = _train_data(spec, paths)
    except NoTrainingData as e:
        raise StageFailed(f"train: {e}") from e
    key = training_resume_key(spec, paths)
    root = TRAIN_CHECKPOINTS_DIR / key[:16]
    try:
        components = load_model(spec.model, paths.model, {"transformer", "embeddings_processor"},
                                load_options(spec))
        state = loop.setup(components.transformer, components.embeddings_processor,
                           loop.Sections.from_spec(spec), key, resolve_device(spec.model.device))
    except ModelSettingError as e:
        raise StageFailed(f"train: {e}") from e
    main = state.accelerator.is_main_process
    if main:
        _remove_stale_checkpoints(root)
    state.accelerator.wait_for_everyone()
    resumed = loop.try_resume(state, root)
    rank, world = state.accelerator.process_index, state.accelerator.num_processes
    distributed.decorrelate(state.generators, rank, state.step)
    if resumed and main:
        print(f"train: resuming at step {state.step} from {root}", file=sys.stderr)
    history = History(root / HISTORY_FILE, state.step) if main else None
    bar = tqdm(total=spec.train.steps, initial=state.step, desc="train", unit="step",
               disable=not main)

    def log(step: int, metrics: dict[str, float]) -> None:
        if history is not None:
            history.log(step, metrics)
        bar.update(step - bar.n)
        bar.set_postfix(loss=f"{metrics['loss']:.4f}")

    try:
        loop.run(state, lambda i: data.batch_at(i * world + rank), log=log,
                 checkpoint_root=root, resume=False)
    except loop.NonFiniteLoss as e:
        raise StageFailed(f"train: {e}") from e
    finally:
        bar.close()
    weights = _gather_result(spec, state)
    if not main or history is None:
        state.accelerator.wait_for_everyone()
        return {}
    name = _save_result(spec, paths, state, weights)
    write_live(history.rows, paths.out / LIVE_DIR)
    shutil.rmtree(root, ignore_errors=True)
    state.accelerator.wait_for_everyone()
    last = history.rows[-1] if history.rows else {}
    return {"steps": state.step, "resumed": resumed, "clips": len(data.items),
            "processes": world, "final_loss": round(last.get("loss", float("nan")), 5),
            "output": name}


def _remove_stale_checkpoints(keep: Path) -> None:
    """Checkpoints of runs with other params can never be resumed: free their space."""
    if TRAIN_CHECKPOINTS_DIR.exists():
        for stale in TRAIN_CHECKPOINTS_DIR.iterdir():
            if stale != keep:
                shutil.rmtree(stale, ignore_errors=True)
