"""train: latents + text features -> a LoRA adapter (or fully fine-tuned weights), with
DVCLive metrics and plots.

Resumable checkpoints live beside the outputs in a hidden folder that DVC does not track
(``data/stages/.train-checkpoints``), tied to a fingerprint of everything that shapes
training: a killed stage resumes on the next ``dvc repro``; a run with other params starts
fresh. Metrics are kept with the checkpoint, so a resumed run logs each step exactly once.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from aiprod_recipes.registry import STAGES_DIR, get_stage
from aiprod_recipes.runtime import Report, StageFailed, StagePaths
from aiprod_recipes.spec import Spec, VideoToVideo
from aiprod_recipes.specio import section_values
from aiprod_recipes.stages.common import load_model, model_fingerprint, resolve_device
from aiprod_recipes.stages.split import read_split
from aiprod_recipes.store.shards import canonical_json
from aiprod_recipes.training import distributed
from aiprod_recipes.training.data import NoTrainingData, TrainData

ADAPTER = "adapter.safetensors"
FULL_WEIGHTS = "transformer.safetensors"
LIVE = "live"
HISTORY = "history.jsonl"


def checkpoint_root() -> Path:
    """Where resumable state survives a killed run (not a DVC output, git-ignored)."""
    return STAGES_DIR / ".train-checkpoints"


def _manifest_digest(folder: Path) -> str:
    return hashlib.sha256((folder / "manifest.jsonl").read_bytes()).hexdigest()


def run_fingerprint(spec: Spec, paths: StagePaths) -> str:
    """Everything that shapes training: its sections, the base model, the data it reads."""
    from aiprod_recipes.training.checkpoint import fingerprint

    data = {name: _manifest_digest(paths.upstream(name))
            for name in ("latents", "embed", "reference")}
    data["split"] = hashlib.sha256(
        (paths.upstream("split") / "train.jsonl").read_bytes()).hexdigest()
    sections = get_stage("train", spec).sections
    return fingerprint({"spec": section_values(spec, sections), "data": data,
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
    items = read_split(paths.upstream("split"), "train")
    folders = {n: paths.upstream(n) for n in ("latents", "embed", "reference")}
    return TrainData.open(items, folders, spec.train.batch_size, spec.train.seed,
                          spec.strategy.with_audio, isinstance(spec.strategy, VideoToVideo),
                          spec.reference.downscale)


def _save_result(spec: Spec, paths: StagePaths, state: Any) -> str:
    from aiprod_recipes.training.lora import AdapterMeta, save_adapter, save_full_weights

    model = state.accelerator.unwrap_model(state.model)
    if spec.train.mode == "full":
        from aiprod_recipes.model.loader import checkpoint_config

        header = {"format": "aiprod-recipes/full-v1",
                  "config": json.dumps(checkpoint_config(paths.model.checkpoint))}
        save_full_weights(model, paths.out / FULL_WEIGHTS, header)
        return FULL_WEIGHTS
    meta = AdapterMeta(
        rank=spec.lora.rank, alpha=spec.lora.alpha,
        target_modules=tuple(spec.lora.target_modules),
        strategy=str(spec.strategy.__struct_config__.tag),
        base_fingerprint=model_fingerprint(paths.model),
        spec_hash=hashlib.sha256(canonical_json(
            section_values(spec, get_stage("train", spec).sections)).encode()).hexdigest()[:16],
    )
    save_adapter(model, paths.out / ADAPTER, meta)
    return ADAPTER


def run(spec: Spec, paths: StagePaths) -> Report:
    """One process, or ``train.accelerate_config``'s processes through ``accelerate launch``."""
    if spec.train.accelerate_config and not distributed.is_worker():
        try:
            return distributed.launch(spec.train.accelerate_config, paths.out,
                                      str(paths.spec_file))
        except distributed.LaunchFailed as e:
            raise StageFailed(str(e)) from e
    return train(spec, paths)


def train(spec: Spec, paths: StagePaths) -> Report:
    """Train in this process (one of several under accelerate: only the main one writes)."""
    from aiprod_recipes.training import loop

    try:
        data = _train_data(spec, paths)
    except NoTrainingData as e:
        raise StageFailed(f"train: {e}") from e
    fp = run_fingerprint(spec, paths)
    root = checkpoint_root() / fp[:16]
    components = load_model(spec.model, paths.model, {"transformer", "embeddings_processor"})
    state = loop.setup(components.transformer, components.embeddings_processor,
                       loop.Sections.from_spec(spec), fp, resolve_device(spec.model.device))
    main = state.accelerator.is_main_process
    if main:
        _remove_stale_checkpoints(root)
    state.accelerator.wait_for_everyone()
    resumed = loop.try_resume(state, root)
    rank, world = state.accelerator.process_index, state.accelerator.num_processes
    distributed.decorrelate(state.generators, rank, state.step)
    if resumed and main:
        print(f"train: resuming at step {state.step} from {root}", file=sys.stderr)
    history = History(root / HISTORY, state.step) if main else None
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
    if not main or history is None:
        state.accelerator.wait_for_everyone()
        return {}
    name = _save_result(spec, paths, state)
    write_live(history.rows, paths.out / LIVE)
    shutil.rmtree(root, ignore_errors=True)
    state.accelerator.wait_for_everyone()
    last = history.rows[-1] if history.rows else {}
    return {"steps": state.step, "resumed": resumed, "clips": len(data.items),
            "processes": world, "final_loss": round(last.get("loss", float("nan")), 5),
            "output": name}


def _remove_stale_checkpoints(keep: Path) -> None:
    """Checkpoints of runs with other params can never be resumed: free their space."""
    if checkpoint_root().exists():
        for stale in checkpoint_root().iterdir():
            if stale != keep:
                shutil.rmtree(stale, ignore_errors=True)
