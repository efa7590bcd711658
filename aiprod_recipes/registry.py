"""The stage registry: the one place that says what each stage reads, which spec sections
shape it, and what it writes.

dvc.yaml is rendered from here (``aiprod-recipes render``) and the runtime hands stages
their paths from here, so a stage never hard-codes a path and dvc.yaml cannot drift from
what the code does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aiprod_recipes.model.tiny_config import CHECKPOINT_NAME, GEMMA_DIR_NAME
from aiprod_recipes.spec import CheckpointModel, Spec

STAGES_DIR = Path("data/stages")
BASE_STAGE = "base"
"""Every stage writes under data/stages/<stage>/ (the top level of the repo is fixed)."""


@dataclass(frozen=True)
class Output:
    """One DVC output of a stage.

    ``persist``: DVC leaves the previous output in place while the stage runs, so a per-item
    stage can reuse the items whose key did not change (and a trainer can resume).
    ``kind``: "outs", "metrics" or "plots" (how dvc.yaml declares it).
    """

    path: str
    persist: bool = False
    kind: str = "outs"


@dataclass(frozen=True)
class StageDef:
    """What one stage is: its module, the spec sections it reads, its inputs and outputs."""

    name: str
    description: str
    sections: tuple[str, ...]
    upstream: tuple[str, ...] = ()
    """Other stages whose outputs this one reads (their main output folder)."""
    upstream_files: tuple[tuple[str, str], ...] = ()
    """(stage, file) pairs: a single file inside another stage's output."""
    uses_raw: bool = False
    uses_model: bool = False
    code: tuple[str, ...] = ()
    """Package folders (besides the stage module) whose code shapes the result."""
    extra_outputs: tuple[Output, ...] = ()
    persist: bool = False
    metrics: tuple[str, ...] = ()
    """Files inside the output that are DVC metrics (dvc metrics show, dvc exp show)."""
    plots: tuple[str, ...] = ()
    """Folders or files inside the output that are DVC plots, with step as x."""

    @property
    def module(self) -> str:
        return f"aiprod_recipes.stages.{self.name}"

    @property
    def out_dir(self) -> Path:
        return STAGES_DIR / self.name

    def outputs(self) -> tuple[Output, ...]:
        return (Output(self.out_dir.as_posix(), persist=self.persist), *self.extra_outputs)


@dataclass(frozen=True)
class ModelPaths:
    """Where the base model lives for a given spec."""

    checkpoint: Path
    gemma_dir: Path
    produced_by_stage: bool = field(default=False)


def model_paths(spec: Spec) -> ModelPaths:
    """The checkpoint and Gemma folder: the user's files, or the tiny model the base stage
    builds (so the default recipe needs no download)."""
    src = spec.model.source
    if isinstance(src, CheckpointModel):
        return ModelPaths(Path(src.path), Path(src.gemma_dir))
    base = STAGES_DIR / BASE_STAGE
    return ModelPaths(base / CHECKPOINT_NAME, base / GEMMA_DIR_NAME, produced_by_stage=True)


STAGES: tuple[StageDef, ...] = (
    StageDef(
        BASE_STAGE, "the tiny seeded LTX-2 checkpoint and Gemma folder (tiny recipes only)",
        sections=("model",), code=("aiprod_recipes/model",),
    ),
    StageDef(
        "ingest", "raw clips -> normalised scene clips, manifest, quarantine report",
        sections=("data", "ingest"), uses_raw=True, code=("aiprod_recipes/media",),
        persist=True,
    ),
    StageDef(
        "caption", "one caption per clip: sidecar files, Qwen2.5-Omni or Gemini",
        sections=("caption",), upstream=("ingest",), uses_raw=True,
        code=("aiprod_recipes/captioning",), persist=True,
    ),
    StageDef(
        "embed", "captions -> Gemma text features",
        sections=("text_encoder", "model"), upstream=("caption",), uses_model=True,
        code=("aiprod_recipes/model",), persist=True,
    ),
    StageDef(
        "latents", "clips -> bucketed video latents and audio latents",
        sections=("video", "audio", "model"), upstream=("ingest",), uses_model=True,
        code=("aiprod_recipes/model", "aiprod_recipes/media", "aiprod_recipes/stages/common.py"),
        persist=True,
    ),
    StageDef(
        "reference", "Canny-edge reference latents for IC-LoRA (empty when off)",
        sections=("reference", "video", "audio", "model"), upstream=("ingest",),
        uses_model=True, code=("aiprod_recipes/model", "aiprod_recipes/media",
                               "aiprod_recipes/stages/latents.py"), persist=True,
    ),
    StageDef(
        "split", "train/val assignment by content hash",
        sections=("split",), upstream_files=(("ingest", "manifest.jsonl"),),
    ),
    StageDef(
        "train", "flow-matching LoRA or full fine-tune; adapter, DVCLive metrics and plots",
        sections=("strategy", "lora", "optim", "train", "flow", "quant", "model"),
        upstream=("split", "embed", "latents", "reference"), uses_model=True,
        code=("aiprod_recipes/training", "aiprod_recipes/model"),
        metrics=("live/metrics.json",), plots=("live/plots/metrics",),
    ),
    StageDef(
        "evaluate", "held-out loss base vs adapter, sample mp4s with sound, report.md",
        sections=("eval", "strategy", "lora", "optim", "train", "flow", "text_encoder",
                  "ingest", "reference", "model"),
        upstream=("train", "split", "caption", "embed", "latents", "reference"),
        uses_model=True,
        code=("aiprod_recipes/inference", "aiprod_recipes/training", "aiprod_recipes/model"),
        metrics=("metrics.json",),
    ),
)
"""Every stage, in pipeline order."""


def all_stages() -> tuple[StageDef, ...]:
    """Every registered stage, in pipeline order."""
    return STAGES


def stages_for(spec: Spec) -> tuple[StageDef, ...]:
    """The stages a spec runs: the base stage only exists when the pipeline builds the model."""
    return tuple(
        s for s in all_stages()
        if s.name != BASE_STAGE or model_paths(spec).produced_by_stage
    )


class UnknownStage(LookupError):
    """A stage name that the registry does not know."""


def get_stage(name: str, spec: Spec) -> StageDef:
    """Look a stage up by name, with the list of valid names in the error."""
    stages = {s.name: s for s in stages_for(spec)}
    if name not in stages:
        raise UnknownStage(f"unknown stage {name!r}; stages: {', '.join(stages) or '(none)'}")
    return stages[name]


def stage_deps(stage: StageDef, spec: Spec) -> list[str]:
    """Everything a stage depends on, as dvc.yaml lists it: data, then code."""
    return data_deps(stage, spec) + code_deps(stage)


def code_deps(stage: StageDef) -> list[str]:
    """The stage's module and the package folders that shape its result (repo-relative)."""
    module_file = Path(*stage.module.split(".")).with_suffix(".py").as_posix()
    return [module_file, *stage.code]


def data_deps(stage: StageDef, spec: Spec) -> list[str]:
    """The data a stage reads: raw clips, upstream outputs, the model."""
    deps: list[str] = []
    if stage.uses_raw:
        deps.append(Path(spec.data.raw_dir).as_posix())
    deps += [(STAGES_DIR / up).as_posix() for up in stage.upstream]
    deps += [(STAGES_DIR / up / f).as_posix() for up, f in stage.upstream_files]
    if stage.uses_model:
        mp = model_paths(spec)
        if mp.produced_by_stage:
            deps.append((STAGES_DIR / BASE_STAGE).as_posix())
        else:
            deps += [mp.checkpoint.as_posix(), mp.gemma_dir.as_posix()]
    return deps
