"""The stage registry: the one place that says what each stage reads, which spec sections
shape it, and what it writes.

dvc.yaml is rendered from here (``aiprod-recipes render``) and the runtime hands stages
their paths from here, so a stage never hard-codes a path and dvc.yaml cannot drift from
what the code does. A stage's code dependencies are not declared here: render derives them
from the import graph of its module (``codedeps``).

The first stage, ``validate``, depends on the spec file itself and writes the resolved spec
(every section, defaults filled in) into a file that git tracks. Every other stage declares
its params from that file, which makes it downstream of validate in DVC's graph: a bad spec
stops at validate, before DVC has removed any other stage's outputs, and a section left out
of params.toml (or a default written out) is the same resolved value to DVC.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiprod_recipes.codedeps import code_dependencies, code_digest
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
    SPEC_FILE,
    SPLIT,
    TRAIN,
    TRAIN_LIVE,
    TRAIN_LIVE_DIR,
    VALIDATE,
    stage_dir,
)
from aiprod_recipes.spec import SECTIONS, Spec, init_from_is_path, manifest_path

OUTPUT_WRITERS = ("aiprod_recipes.provenance",)
"""Modules the runtime runs for every stage that records provenance, shaping what lands in
its output (provenance.json): they count as imports of each such stage."""


@dataclass(frozen=True)
class Output:
    """One DVC output of a stage.

    ``persist``: DVC leaves the previous output in place while the stage runs, so a per-item
    stage can reuse the items whose key did not change (and a trainer can resume).
    ``kind``: "outs", "metrics" or "plots" (how dvc.yaml declares it).
    ``cache``: False for an output git tracks instead of DVC's cache.
    """

    path: str
    persist: bool = False
    kind: str = "outs"
    cache: bool = True


@dataclass(frozen=True)
class StageDef:
    """What one stage is: its module, the spec sections it reads, its inputs and outputs."""

    name: str
    description: str
    sections: tuple[str, ...]
    """The resolved spec sections (or ``section.key``s) the stage always reads: its params
    in dvc.lock, its provenance, its item keys."""
    upstream: tuple[str, ...] = ()
    """Output folders this one reads: other stages' (their main output folder), or another
    output a stage writes beside its main one (``TRAIN_LIVE``, the live training curves)."""
    upstream_files: tuple[tuple[str, str], ...] = ()
    """(stage, file) pairs: a single file inside another stage's output."""
    uses_raw: bool = False
    uses_model: bool = False
    extra_outputs: tuple[Output, ...] = ()
    persist: bool = False
    reads_spec_file: bool = False
    """Depends on the spec file as a whole instead of on resolved params (validate only)."""
    cache: bool = True
    """False: git tracks the output instead of DVC's cache (the resolved spec)."""
    provenance: bool = True
    """Write provenance.json into the output (package versions, input digests)."""
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
    """Paths the spec names that the stage reads (besides raw clips and the model): a
    caption manifest, a local captioning model, an adapter to start from. Dependencies in
    dvc.yaml, checked before the stage runs."""
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
        return (Output(self.out_dir.as_posix(), persist=self.persist, cache=self.cache),
                *self.extra_outputs)

    def params(self, spec: Spec) -> tuple[str, ...]:
        """Every section or key of ``spec`` the stage reads: what dvc.yaml declares as its
        params and what its provenance and fingerprints record."""
        return (*self.sections, *(self.params_for(spec) if self.params_for else ()))


def _train_params(spec: Spec) -> tuple[str, ...]:
    """Periodic validation renders the eval samples (prompts encoded with the text encoder;
    the frame rate comes from the stored clips) during training, so the train stage then
    reads those sections.

    Off, it reads none of them and declares none: eval settings stay evaluate's alone. The
    switch itself is recorded by what dvc.yaml declares: turning it on or off changes the
    render, which the runtime insists on (evaluate, which reads every eval key, runs on any
    eval change and stops with "run `aiprod-recipes render`"), and a re-rendered train stage
    reruns."""
    return ("eval", "text_encoder") if spec.eval.every_steps else ()


def _train_deps(spec: Spec) -> tuple[str, ...]:
    """An adapter to start from, when the spec names a file (a Hub id is no file dep)."""
    init = spec.lora.init_from
    return (posixpath.normpath(init),) if init and init_from_is_path(init) else ()


def _caption_deps(spec: Spec) -> tuple[str, ...]:
    """The caption manifest, or the local captioning model's folder, when the spec names one."""
    named = [manifest_path(spec), getattr(spec.caption.backend, "model_dir", None)]
    return tuple(posixpath.normpath(f) for f in named if f)


_LIVE = TRAIN_LIVE_DIR.as_posix()


STAGES: tuple[StageDef, ...] = (
    StageDef(
        VALIDATE, "check the whole spec and write it resolved (defaults filled in) for DVC",
        sections=SECTIONS, reads_spec_file=True, persist=True, cache=False, provenance=False,
    ),
    StageDef(
        BASE, "the tiny seeded LTX-2 checkpoint and Gemma folder (tiny recipes only)",
        sections=("model",),
    ),
    StageDef(
        INGEST, "raw clips -> normalised scene clips, manifest, quarantine report",
        sections=("data", "ingest"), uses_raw=True, persist=True,
    ),
    StageDef(
        CAPTION, "one caption per clip: sidecar files, Qwen2.5-Omni or Gemini",
        sections=("caption",), upstream=(INGEST,), uses_raw=True, deps_for=_caption_deps,
        persist=True, item_parallel=True,
    ),
    StageDef(
        EMBED, "captions -> Gemma text features",
        sections=("text_encoder", "model"), upstream=(CAPTION,), uses_model=True,
        persist=True, item_parallel=True,
    ),
    StageDef(
        LATENTS, "clips -> bucketed video latents and audio latents",
        sections=("video", "audio", "model"), upstream=(INGEST,), uses_model=True,
        persist=True, item_parallel=True,
    ),
    StageDef(
        REFERENCE, "Canny-edge reference latents for IC-LoRA (empty when off)",
        sections=("reference", "video", "audio", "model"), upstream=(INGEST,),
        uses_model=True, persist=True, item_parallel=True,
    ),
    StageDef(
        SPLIT, "train/val assignment by content hash",
        sections=("split",), upstream_files=((INGEST, MANIFEST_FILE),),
    ),
    StageDef(
        TRAIN, "flow-matching LoRA or full fine-tune; adapter, DVCLive metrics and plots",
        sections=("strategy", "lora", "optim", "train", "flow", "quant", "model"),
        upstream=(SPLIT, EMBED, LATENTS, REFERENCE, CAPTION), uses_model=True,
        extra_outputs=(Output(_LIVE, persist=True),),
        metrics=(f"{_LIVE}/{METRICS_FILE}",), plots=(f"{_LIVE}/{LIVE_PLOTS}",),
        images=lambda spec: (f"{_LIVE}/{LIVE_IMAGES}",) if spec.eval.every_steps else (),
        accelerate_config=lambda spec: spec.train.accelerate_config,
        params_for=_train_params, deps_for=_train_deps,
    ),
    StageDef(
        EVALUATE, "held-out loss base vs adapter, sample mp4s with sound, report.md",
        sections=("eval", "strategy", "quant", "text_encoder", "reference.downscale", "model"),
        upstream=(TRAIN, TRAIN_LIVE, SPLIT, CAPTION, EMBED, LATENTS, REFERENCE),
        uses_model=True,
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


def _code_roots(stage: StageDef) -> tuple[str, ...]:
    return (stage.module, *(OUTPUT_WRITERS if stage.provenance else ()))


def code_deps(stage: StageDef) -> list[str]:
    """The package files whose code shapes the stage's result (repo-relative): its module
    and everything it imports, derived from the import graph."""
    return list(code_dependencies(_code_roots(stage)))


def stage_code_digest(stage: StageDef) -> str:
    """A digest of the source of every module the stage's own module imports: what a stored
    item was computed by. The provenance writer is left out (it shapes provenance.json, not
    an item), so a change there reruns the stage (``code_deps``) but reuses its items."""
    return code_digest((stage.module,))


def data_deps(stage: StageDef, spec: Spec) -> list[str]:
    """The data a stage reads: the spec file (validate), raw clips, upstream outputs, files
    the spec names, the model."""
    deps: list[str] = [SPEC_FILE] if stage.reads_spec_file else []
    if stage.uses_raw:
        deps.append(posixpath.normpath(spec.data.raw_dir))
    deps += [stage_dir(up).as_posix() for up in stage.upstream]
    deps += [(stage_dir(up) / f).as_posix() for up, f in stage.upstream_files]
    deps += [d for d in (stage.deps_for(spec) if stage.deps_for else ()) if d not in deps]
    if stage.uses_model:
        mp = model_paths(spec)
        if mp.produced_by_stage:
            deps.append(stage_dir(BASE).as_posix())
        else:
            deps += [mp.checkpoint.as_posix(), mp.gemma_dir.as_posix()]
    return deps
