"""Every artifact name, stage folder and shared constant, declared once.

Stage outputs are read by other stages, by the command line (``sample``, ``decode``,
``push``), by DVC (metrics and plots in dvc.yaml) and by people. When two of them spelled a
file name on their own, a rename in one place silently broke the other; so every name that
crosses a module boundary lives here and is imported. This module imports nothing of the
package: any floor may use it.
"""

from __future__ import annotations

from pathlib import Path

SPEC_FILE = "params.toml"
"""The spec of a project (DVC reads its params from it)."""

STAGES_DIR = Path("data/stages")
"""Every stage writes under data/stages/<stage>/ (the top level of the repo is fixed)."""


def stage_dir(stage: str) -> Path:
    """The output folder of a stage."""
    return STAGES_DIR / stage


# Stage names that other modules refer to (the registry declares them all).
VALIDATE = "validate"
BASE = "base"
INGEST = "ingest"
CAPTION = "caption"
EMBED = "embed"
LATENTS = "latents"
REFERENCE = "reference"
SPLIT = "split"
TRAIN = "train"
EVALUATE = "evaluate"

# Running a stage as several processes
ACCELERATE_CONFIG_ENV = "AIPROD_ACCELERATE_CONFIG"
"""Environment variable naming an accelerate config: the per-item preprocessing stages then
run as its processes. A runtime choice, never a param: it changes no output byte."""
PARTS_DIR = ".parts"
"""Inside a stage's temporary output: one folder per process, merged by the main one."""

# Files every stage output may hold.
PROVENANCE_FILE = "provenance.json"
MANIFEST_FILE = "manifest.jsonl"
"""The per-item manifest of a sharded stage output (ingest, embed, latents, reference)."""

# validate
RESOLVED_SPEC_FILE = "resolved.json"
"""The whole spec with every default filled in, written by the validate stage: the file
every other stage declares its params from (see registry)."""


def resolved_spec_path() -> Path:
    """Where the resolved spec lives (committed to git, not to the DVC cache)."""
    return stage_dir(VALIDATE) / RESOLVED_SPEC_FILE


# ingest
QUARANTINE_FILE = "quarantine.json"
CLIP_TENSOR = "mp4"
"""The tensor of an ingest item holding the scene clip's mp4 bytes (H.264 + AAC)."""

# caption
CAPTIONS_FILE = "captions.jsonl"
CAPTION_FAILURES_FILE = "failures.json"

# split
TRAIN_SPLIT_FILE = "train.jsonl"
VAL_SPLIT_FILE = "val.jsonl"

# base: the tiny model the pipeline builds
CHECKPOINT_FILE = "ltx2.safetensors"
GEMMA_DIR = "gemma"

# train
ADAPTER_FILE = "adapter.safetensors"
"""A LoRA in ComfyUI layout (train.mode = "lora")."""
FULL_WEIGHTS_FILE = "transformer.safetensors"
"""Fully fine-tuned transformer weights (train.mode = "full")."""
TRAIN_LIVE = "train-live"
"""DVCLive's folder under data/stages (``stage_dir(TRAIN_LIVE)``): metrics.json,
plots/metrics/*.tsv, validation previews. A persisted output of the train stage beside its
atomic output folder, written at every log step, so DVC's live views (``dvc exp show``,
``dvc plots``, the VS Code extension) read it while the stage runs. Stages that read it
(evaluate's report.html) declare it as an upstream like a stage's folder."""
TRAIN_LIVE_DIR = stage_dir(TRAIN_LIVE)
LIVE_PLOTS = "plots/metrics"
"""DVCLive's metric histories inside ``TRAIN_LIVE_DIR`` (x = step)."""
LIVE_IMAGES = "plots/images"
"""DVCLive's image plots inside ``TRAIN_LIVE_DIR``: one animated preview per validation
sample and step (``<sample>/<step>.gif``, DVC's slider layout)."""
LIVE_VIDEOS = "videos"
"""The validation mp4s (with sound) inside ``TRAIN_LIVE_DIR``: ``<sample>/<step>.mp4``."""
KEPT_CHECKPOINTS_DIR = "checkpoints"
"""Intermediate adapters kept in the train output (``train.keep_checkpoints``)."""
KEPT_INDEX_FILE = "index.json"
"""What ``KEPT_CHECKPOINTS_DIR`` holds: every kept file, its step and held-out loss, the best."""


def kept_checkpoint_name(step: int) -> str:
    """The file name of the adapter (or full weights) kept at ``step``."""
    return f"step_{step:06d}.safetensors"


TRACKERS_DIR = STAGES_DIR / ".train-trackers"
"""TensorBoard and W&B offline runs (``train.trackers``): git-ignored, not a DVC output,
since their files carry timestamps and host names."""
TRAIN_CHECKPOINTS_DIR = STAGES_DIR / ".train-checkpoints"
"""Resumable training state: beside the outputs, git-ignored, not a DVC output."""

# evaluate
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
REPORT_HTML_FILE = "report.html"
"""report.md's content with training curves and playable samples, one page."""
SAMPLES_DIR = "samples"

# LTX-2 facts shared by the media and model floors
MODEL_AUDIO_RATE = 16_000
"""Sample rate of the waveforms LTX-2's audio VAE encodes (16 kHz log-mel)."""
