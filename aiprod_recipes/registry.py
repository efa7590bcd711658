"""The stage registry: the one place that says what each stage reads, which spec sections
shape it, and what it writes.

dvc.yaml is rendered from here (``aiprod-recipes render``) and the runtime hands stages
their paths from here, so a stage never hard-codes a path and dvc.yaml cannot drift from
what the code does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiprod_recipes.model.runtime import model_paths
from aiprod_recipes.names import (
    BASE,
    CAPTION,
    EMBED,
    EVALUATE,
    INGEST,
    LATENTS,
    LIVE_IMAGES,
    LIVE_PLOTS,
    MANIFEST_FILE,
    METRICS_FILE,
    REFERENCE,
    SPLIT,
    TRAIN,
    TRAIN_LIVE,
    TRAIN_LIVE_DIR,
    stage_dir,
)
from aiprod_recipes.spec import Spec, init_from_is_path


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
    """The spec sections the stage always reads (its params in dvc.yaml)."""
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
    """Repo-relative files of the outputs that are DVC metrics (dvc metrics show, dvc exp
    show)."""
    plots: tuple[str, ...] = ()
    """Repo-relative folders or files of the outputs that are DVC plots, with step as x."""
    images: Callable[[Spec], tuple[str, ...]] | None = None
    """Repo-relative folders of the outputs holding DVC image plots for this spec (only
    those that will exist: DVC fails on a declared plot path that is missing)."""
    params_for: Callable[[Spec], tuple[str, ...]] | None = None
    """Sections or dotted keys the stage reads besides ``sections`` for this spec (a part
    of the spec that only matters when a switch in it is on)."""
    deps_for: Callable[[Spec], tuple[str, ...]] | None = None
    """Paths the spec names that the stage reads (besides raw clips and the model)."""
    accelerate_config: Callable[[Spec], str] | None = None
    """The accelerate config file a spec asks this stage to run under (empty: one
    process); the runtime then starts the stage's work in every process of that config."""
    item_parallel: bool = False
    """A per-item stage whose output is the same bytes for any process count: it runs as
    the processes of the accelerate config the environment names
    (``runtime.launch_config``), each computing its share of the items (``store.parts``)."""

    @property
    def module(self) -> str:
        return f"aiprod_recipes.stages.{self.name}"

    @property
    def out_dir(self) -> Path:
        return stage_dir(self.name)

    def reads(self) -> tuple[str, ...]:
        """Every stage whose output this one reads, whole or one file of it."""
        return (*self.upstream, *(up for up, _ in self.upstream_files))

    def outputs(self) -> tuple[Output, ...]:
        return (Output(self.out_dir.as_posix(), persist=self.persist), *self.extra_outputs)

    def params(self, spec: Spec) -> tuple[str, ...]:
        """Every section or key of ``spec`` the stage reads: what dvc.yaml declares as its
        params and what its provenance and fingerprints record."""
        return (*self.sections, *(self.params_for(spec) if self.params_for else ()))


def _train_params(spec: Spec) -> tuple[str, ...]:
    """Periodic validation renders the eval samples (prompts encoded with the text encoder,
    at the clips' frame rate) during training, so the train stage then reads those sections.

    Off, it reads none of them and declares none: eval settings stay evaluate's alone. The
    switch itself is recorded by what dvc.yaml declares: turning it on or off changes the
    render, which the runtime insists on (evaluate, which reads every eval key, runs on any
    eval change and stops with "run `aiprod-recipes render`"), and a re-rendered train stage
    reruns. (A dotted key such as ``eval.every_steps`` cannot be declared instead: DVC
    requires a declared key to be written in params.toml, and defaults are not.)"""
    return ("eval", "text_encoder", "ingest") if spec.eval.every_steps else ()


def _train_deps(spec: Spec) -> tuple[str, ...]:
    """An adapter to start from, when the spec names a file (a Hub id is no file dep)."""
    init = spec.lora.init_from
    return (Path(init).as_posix(),) if init and init_from_is_path(init) else ()


_LIVE = TRAIN_LIVE_DIR.as_posix()


STAGES: tuple[StageDef, ...] = (
    StageDef(
        BASE, "the tiny seeded LTX-2 checkpoint and Gemma folder (tiny recipes only)",
        sections=("model",), code=("aiprod_recipes/model",),
    ),
    StageDef(
        INGEST, "raw clips -> normalised scene clips, manifest, quarantine report",
        sections=("data", "ingest"), uses_raw=True, code=("aiprod_recipes/media",),
        persist=True,
    ),
    StageDef(
        CAPTION, "one caption per clip: sidecar files, Qwen2.5-Omni or Gemini",
        sections=("caption",), upstream=(INGEST,), uses_raw=True,
        code=("aiprod_recipes/captioning",), persist=True, item_parallel=True,
    ),
    StageDef(
        EMBED, "captions -> Gemma text features",
        sections=("text_encoder", "model"), upstream=(CAPTION,), uses_model=True,
        code=("aiprod_recipes/model",), persist=True, item_parallel=True,
    ),
    StageDef(
        LATENTS, "clips -> bucketed video latents and audio latents",
        sections=("video", "audio", "model"), upstream=(INGEST,), uses_model=True,
        code=("aiprod_recipes/model", "aiprod_recipes/media"),
        persist=True, item_parallel=True,
    ),
    StageDef(
        REFERENCE, "Canny-edge reference latents for IC-LoRA (empty when off)",
        sections=("reference", "video", "audio", "model"), upstream=(INGEST,),
        uses_model=True, code=("aiprod_recipes/model", "aiprod_recipes/media",
                               "aiprod_recipes/stages/latents.py"), persist=True,
        item_parallel=True,
    ),
    StageDef(
        SPLIT, "train/val assignment by content hash",
        sections=("split",), upstream_files=((INGEST, MANIFEST_FILE),),
    ),
    StageDef(
        TRAIN, "flow-matching LoRA or full fine-tune; adapter, DVCLive metrics and plots",
        sections=("strategy", "lora", "optim", "train", "flow", "quant", "model"),
        upstream=(SPLIT, EMBED, LATENTS, REFERENCE, CAPTION), uses_model=True,
        code=("aiprod_recipes/training", "aiprod_recipes/model", "aiprod_recipes/inference"),
        extra_outputs=(Output(_LIVE, persist=True),),
        metrics=(f"{_LIVE}/{METRICS_FILE}",), plots=(f"{_LIVE}/{LIVE_PLOTS}",),
        images=lambda spec: (f"{_LIVE}/{LIVE_IMAGES}",) if spec.eval.every_steps else (),
        accelerate_config=lambda spec: spec.train.accelerate_config,
        params_for=_train_params, deps_for=_train_deps,
    ),
    StageDef(
        EVALUATE, "held-out loss base vs adapter, sample mp4s with sound, report.md",
        sections=("eval", "strategy", "lora", "optim", "train", "flow", "quant",
                  "text_encoder", "ingest", "reference", "model"),
        upstream=(TRAIN, TRAIN_LIVE, SPLIT, CAPTION, EMBED, LATENTS, REFERENCE),
        uses_model=True,
        code=("aiprod_recipes/inference", "aiprod_recipes/training", "aiprod_recipes/model"),
        metrics=((stage_dir(EVALUATE) / METRICS_FILE).as_posix(),),
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
        if s.name != BASE or model_paths(spec).produced_by_stage
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
    deps += [stage_dir(up).as_posix() for up in stage.upstream]
    deps += [(stage_dir(up) / f).as_posix() for up, f in stage.upstream_files]
    deps += list(stage.deps_for(spec) if stage.deps_for else ())
    if stage.uses_model:
        mp = model_paths(spec)
        if mp.produced_by_stage:
            deps.append(stage_dir(BASE).as_posix())
        else:
            deps += [mp.checkpoint.as_posix(), mp.gemma_dir.as_posix()]
    return deps
