"""The evaluate stage's human-facing outputs: thumbnails, metrics.json and report.md.

report.md is plain Markdown with relative links, so it renders in a browser, on GitHub and
in ``dvc exp show``-adjacent tooling alike: the metrics table, the key training settings,
then one thumbnail per sample (its first and middle frames) linking to the mp4, beside what
it was conditioned on (the first frame, or the reference video), and whether it has sound.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from aiprod_recipes.spec import Spec
from aiprod_recipes.specio import section_values

__all__ = ["SampleEntry", "format_value", "loss_rows", "spec_summary", "write_metrics",
           "write_report", "write_thumbnail"]


@dataclass(frozen=True)
class SampleEntry:
    """One generated sample, paths relative to the report's folder."""

    video: str
    thumbnail: str
    prompt: str
    mode: str
    seed: int
    has_audio: bool = False
    condition: str | None = None
    """An image of what the sample was conditioned on: the first frame (image-to-video) or
    the reference video's thumbnail (IC-LoRA)."""
    condition_video: str | None = None
    """The reference video itself (IC-LoRA)."""


def write_thumbnail(path: Path, frames: np.ndarray) -> Path:
    """The first and middle frames side by side, as a PNG."""
    if frames.ndim != 4 or len(frames) == 0:
        raise ValueError(f"expected frames [F, H, W, 3], got {frames.shape}")
    strip = np.concatenate([frames[0], frames[len(frames) // 2]], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path


def _json_value(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_metrics(path: Path, metrics: dict[str, Any]) -> Path:
    """metrics.json with sorted keys; NaN (no val clips) becomes null."""
    doc = {k: _json_value(v) for k, v in metrics.items()}
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


TRAINING_SECTIONS = ("strategy", "lora", "optim", "train")
"""The sections of a training run the report shows."""


def spec_summary(spec: Spec, training: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a reader compares between experiments: the training sections as the
    trained weights were made (``training``: resolved sections by name, from the train
    output's provenance), and ``eval``."""
    train = training["train"]
    optim = training["optim"]
    ev = section_values(spec, ("eval",))["eval"]
    return {
        "strategy": training["strategy"],
        "lora": training["lora"],
        "optim": {k: optim[k] for k in ("optimizer", "learning_rate", "scheduler",
                                        "warmup_steps", "weight_decay", "max_grad_norm")},
        "train": {k: train[k] for k in ("mode", "steps", "batch_size",
                                        "gradient_accumulation_steps", "mixed_precision",
                                        "seed")},
        "eval": {k: ev[k] for k in ("steps", "cfg_scale", "stg_scale", "stg_blocks", "seed",
                                    "bucket")},
    }


def format_value(value: Any, nested: bool = False) -> str:
    """A metric or setting as report text: 6 significant digits, n/a for NaN."""
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.6g}"
    if isinstance(value, dict):
        text = ", ".join(f"{k}={format_value(v, True)}" for k, v in value.items())
        return f"({text})" if nested else text
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v, True) for v in value) + "]"
    return str(value)


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def loss_rows(metrics: dict[str, Any], levels: Sequence[float]
              ) -> list[tuple[str, float, float]]:
    """(noise level, base loss, adapter loss): all levels together, then each level."""
    rows = [("all", metrics["loss_base"], metrics["loss_adapter"])]
    rows += [(f"{s:g}", metrics[f"loss_base_level_{s:g}"], metrics[f"loss_adapter_level_{s:g}"])
             for s in levels]
    return rows


def _metrics_table(metrics: dict[str, Any], levels: Sequence[float]) -> list[str]:
    lines = ["| noise level | base | adapter | base - adapter |", "|---|---|---|---|"]
    for name, base, adapter in loss_rows(metrics, levels):
        cells = (name, format_value(base), format_value(adapter), format_value(base - adapter))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _sample_media(i: int, s: SampleEntry) -> list[str]:
    """The sample's thumbnail linking to its mp4; with a condition, the two side by side."""
    output = f"[![sample {i + 1}]({s.thumbnail})]({s.video})"
    if s.condition is None:
        return [output, ""]
    kind = "reference" if s.condition_video else "first frame"
    condition = f"![{kind} {i + 1}]({s.condition})"
    if s.condition_video:
        condition = f"[{condition}]({s.condition_video})"
    return [f"| {kind} | output |", "|---|---|", f"| {condition} | {output} |", ""]


def write_report(path: Path, spec: Spec, training: Mapping[str, Any], metrics: dict[str, Any],
                 samples: Sequence[SampleEntry]) -> Path:
    """report.md: metrics, the spec summary, and every sample with its prompt."""
    lines = ["# Evaluation", "",
             f"Held-out flow-matching loss on {metrics['num_val_clips']} val clip(s), "
             "same noise for both models (lower is better).", ""]
    lines += _metrics_table(metrics, spec.eval.loss_levels)
    lines += ["", "## Settings", "", "| section | values |", "|---|---|"]
    for section, values in spec_summary(spec, training).items():
        lines.append(f"| {section} | {_escape(format_value(values))} |")
    lines += ["", f"## Samples ({len(samples)})", ""]
    if not samples:
        lines.append("No samples (eval.max_samples = 0 or no prompt).")
    for i, s in enumerate(samples):
        lines += [f"### {i + 1}. {s.mode}, seed {s.seed}", "", *_sample_media(i, s),
                  f"> {_escape(s.prompt)}", "",
                  "Sound: yes." if s.has_audio else "Sound: none (video only).", ""]
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return path
