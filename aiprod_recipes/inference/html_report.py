"""report.html: the evaluation as one page that opens from disk in any browser.

report.md is for GitHub and for diffs; this page is for looking at a run: the held-out loss
table, the training curves DVCLive recorded (drawn as inline SVG), the key settings, and
every sample as a playable video with its prompt. The page fetches nothing: no script, no
CDN, no web font. Videos are embedded as data URIs, so the file can be copied or mailed on
its own; when together they would pass ``INLINE_LIMIT_BYTES`` (a page of hundreds of MB
makes browsers crawl) they are linked relative to the page instead, which works from disk
as long as the samples folder stays beside it (the page says so).
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiprod_recipes.inference.report import (
    SampleEntry,
    format_value,
    loss_rows,
    spec_summary,
)
from aiprod_recipes.names import LIVE_PLOTS, METRICS_FILE
from aiprod_recipes.spec import Spec

__all__ = ["INLINE_LIMIT_BYTES", "Curve", "chart_svg", "read_curves", "write_html_report"]

INLINE_LIMIT_BYTES = 64 * 1024 * 1024
"""Above this many bytes of video in total, samples are linked instead of embedded."""

_LEVEL = re.compile(r"(?P<chart>.+)_s(?P<band>\d[\d.]*-\d[\d.]*)")
_COLOURS = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000",
            "#f0e442")
"""Okabe-Ito: told apart with the common colour-vision deficiencies."""
_W, _H, _LEFT, _RIGHT, _TOP, _BOTTOM = 560, 220, 64, 16, 12, 32
_TICKS = 5


@dataclass(frozen=True)
class Curve:
    """One metric's logged values: ``label`` within its chart, finite points only."""

    label: str
    steps: tuple[int, ...]
    values: tuple[float, ...]


def _read_tsv(path: Path, label: str) -> Curve:
    """A DVCLive TSV: a ``step`` column and the metric's column (``timestamp`` ignored)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    if not rows or "step" not in rows[0]:
        raise ValueError(f"{path}: not a DVCLive metric file (no 'step' column)")
    header = rows[0]
    value_cols = [i for i, name in enumerate(header) if name not in ("step", "timestamp")]
    if len(value_cols) != 1:
        raise ValueError(f"{path}: expected one metric column, got {header}")
    at_step, at_value = header.index("step"), value_cols[0]
    steps, values = [], []
    for line, row in enumerate(rows[1:], start=2):
        try:
            step, value = int(row[at_step]), float(row[at_value])
        except (IndexError, ValueError) as e:
            raise ValueError(f"{path}:{line}: unreadable row {row}") from e
        if math.isfinite(value):
            steps.append(step)
            values.append(value)
    return Curve(label, tuple(steps), tuple(values))


def read_curves(live: Path) -> dict[str, list[Curve]]:
    """DVCLive's metric files under ``live``, as charts: chart title -> curves.

    A per-noise-level metric (``train/loss_video_s0.2-0.4``) joins its overall metric
    (``train/loss_video``, labelled "all") in one chart. Loss charts come first.
    """
    plots = live / LIVE_PLOTS  # one TSV per metric
    charts: dict[str, list[Curve]] = {}
    for tsv in sorted(plots.rglob("*.tsv")) if plots.is_dir() else []:
        name = tsv.relative_to(plots).with_suffix("").as_posix()
        level = _LEVEL.fullmatch(name)
        chart, label = (level["chart"], f"noise {level['band']}") if level else (name, "all")
        charts.setdefault(chart, []).append(_read_tsv(tsv, label))
    for curves in charts.values():
        curves.sort(key=lambda c: (c.label != "all", c.label))
    return dict(sorted(charts.items(), key=lambda kv: ("loss" not in kv[0], kv[0])))


def _read_summary(live: Path) -> dict[str, Any]:
    """DVCLive's summary: every metric's last value, and the last step."""
    path = live / METRICS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# --------------------------------------------------------------------------- charts

def _span(lo: float, hi: float) -> tuple[float, float]:
    """A non-empty axis range around [lo, hi]."""
    if hi > lo:
        return lo, hi
    pad = abs(lo) * 0.1 or 1.0
    return lo - pad, hi + pad


def _ticks(lo: float, hi: float, *, whole: bool = False) -> list[float]:
    """About ``_TICKS`` round values (1, 2 or 5 times a power of ten) within [lo, hi]."""
    raw = (hi - lo) / _TICKS
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    if whole:
        step = max(1.0, round(step))
    first = math.ceil(lo / step - 1e-9)
    return [k * step for k in range(first, math.floor(hi / step + 1e-9) + 1)]


def chart_svg(title: str, curves: Sequence[Curve]) -> str:
    """One line chart as inline SVG: a polyline per curve, y grid with values, x steps."""
    steps = [s for c in curves for s in c.steps]
    values = [v for c in curves for v in c.values]
    if not steps:
        return f"<p>{html.escape(title)}: no finite values logged.</p>"
    x0, x1 = _span(min(steps), max(steps))
    y0, y1 = _span(min(values), max(values))
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def x(step: float) -> float:
        return _LEFT + (step - x0) / (x1 - x0) * plot_w

    def y(value: float) -> float:
        return _TOP + (y1 - value) / (y1 - y0) * plot_h

    parts = [f'<svg class="chart" data-chart="{html.escape(title)}" role="img" '
             f'viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}">'
             f"<title>{html.escape(title)}</title>"]
    for v in _ticks(y0, y1):
        parts.append(f'<line class="grid" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y(v):.1f}" '
                     f'y2="{y(v):.1f}"/><text class="tick" x="{_LEFT - 6}" y="{y(v) + 4:.1f}" '
                     f'text-anchor="end">{v:.4g}</text>')
    for s in _ticks(x0, x1, whole=True):
        parts.append(f'<text class="tick" x="{x(s):.1f}" y="{_H - _BOTTOM + 16}" '
                     f'text-anchor="middle">{s:.0f}</text>')
    parts.append(f'<text class="tick" x="{_W - _RIGHT}" y="{_H - 4}" '
                 'text-anchor="end">step</text>')
    for i, curve in enumerate(curves):
        colour = _COLOURS[i % len(_COLOURS)]
        points = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in zip(curve.steps, curve.values,
                                                                   strict=True))
        parts.append(f'<polyline class="curve" data-label="{html.escape(curve.label)}" '
                     f'fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/>')
        if len(curve.steps) == 1:
            parts.append(f'<circle cx="{x(curve.steps[0]):.1f}" cy="{y(curve.values[0]):.1f}" '
                         f'r="3" fill="{colour}"/>')
    parts.append("</svg>")
    legend = "".join(f'<span style="color:{_COLOURS[i % len(_COLOURS)]}">&#9632;</span> '
                     f"{html.escape(c.label)} " for i, c in enumerate(curves))
    return "".join(parts) + (f'<p class="legend">{legend}</p>' if len(curves) > 1 else "")


# --------------------------------------------------------------------------- page parts

def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _loss_section(spec: Spec, metrics: dict[str, Any]) -> str:
    rows = [(name, format_value(base), format_value(adapter), format_value(base - adapter))
            for name, base, adapter in loss_rows(metrics, spec.eval.loss_levels)]
    return (f"<h2>Held-out loss</h2><p>Flow-matching loss on {metrics['num_val_clips']} val "
            "clip(s), same noise for both models (lower is better).</p>"
            + _table(("noise level", "base", "adapter", "base - adapter"), rows))


def _curves_section(live: Path) -> str:
    charts = read_curves(live)
    if not charts:
        return (f"<h2>Training curves</h2><p>No DVCLive metric files in "
                f"{html.escape(str(live))}.</p>")
    parts = ["<h2>Training curves</h2>"]
    for title, curves in charts.items():
        parts.append(f"<figure><figcaption>{html.escape(title)}</figcaption>"
                     f"{chart_svg(title, curves)}</figure>")
    summary = _flatten(_read_summary(live))
    step = summary.pop("step", None)
    if summary:
        parts.append(f"<h3>Last logged values (step {html.escape(str(step))})</h3>")
        parts.append(_table(("metric", "value"),
                            [(k, format_value(v)) for k, v in sorted(summary.items())]))
    return "".join(parts)


def _settings_section(spec: Spec, training: Mapping[str, Any]) -> str:
    rows = [(section, format_value(values))
            for section, values in spec_summary(spec, training).items()]
    return "<h2>Settings</h2>" + _table(("section", "values"), rows)


def _video_sources(root: Path, samples: Sequence[SampleEntry], limit: int) -> list[str]:
    """Each sample's ``src``: a data URI when all fit under ``limit``, else its path."""
    sizes = [(root / s.video).stat().st_size for s in samples]
    if sum(sizes) > limit:
        return [html.escape(s.video) for s in samples]
    return ["data:video/mp4;base64," + base64.b64encode((root / s.video).read_bytes()).decode()
            for s in samples]


def _samples_section(root: Path, samples: Sequence[SampleEntry], limit: int) -> str:
    parts = [f"<h2>Samples ({len(samples)})</h2>"]
    if not samples:
        return parts[0] + "<p>No samples (eval.max_samples = 0 or no prompt).</p>"
    sources = _video_sources(root, samples, limit)
    if not sources[0].startswith("data:"):
        parts.append(f"<p>The videos are linked, not embedded (over "
                     f"{limit // (1024 * 1024)} MB together): keep the samples folder "
                     "beside this page.</p>")
    parts.append('<div class="samples">')
    for i, (s, src) in enumerate(zip(samples, sources, strict=True)):
        sound = "with sound" if s.has_audio else "no sound"
        parts.append(f'<figure class="sample">{_condition(root, s)}<video controls '
                     f'preload="metadata" playsinline src="{src}"></video><figcaption><b>'
                     f"{i + 1}. {html.escape(s.mode)}, seed {s.seed}, {sound}</b><br>"
                     f"{html.escape(s.prompt)}</figcaption></figure>")
    return "".join(parts) + "</div>"


def _condition(root: Path, s: SampleEntry) -> str:
    """What the sample was conditioned on (first frame or the reference's thumbnail), as an
    embedded image above it."""
    if s.condition is None or not (root / s.condition).is_file():
        return ""
    kind = "reference" if s.condition_video else "first frame"
    data = base64.b64encode((root / s.condition).read_bytes()).decode()
    return (f'<img class="condition" alt="{kind}" title="{kind}" '
            f'src="data:image/png;base64,{data}">')


_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 60em;
       padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: .5em 0 1em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; }
td { font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; }
figcaption { font-weight: 600; }
.samples { display: flex; flex-wrap: wrap; gap: 0 1.5em; }
.sample { width: 28em; max-width: 100%; }
.sample figcaption { font-weight: normal; }
video { width: 100%; background: #000; }
.condition { width: 100%; image-rendering: pixelated; }
.chart .grid { stroke: #e4e4e4; }
.chart .tick { font-size: 11px; fill: #555; }
.legend { margin: 0; font-size: 13px; }
"""


def write_html_report(path: Path, spec: Spec, training: Mapping[str, Any],
                      metrics: dict[str, Any], samples: Sequence[SampleEntry], live: Path, *,
                      inline_limit: int = INLINE_LIMIT_BYTES) -> Path:
    """report.html beside the samples (their paths are relative to ``path``'s folder);
    ``training`` holds the training sections as the train output recorded them, ``live`` is
    the train stage's DVCLive folder."""
    body = (_loss_section(spec, metrics) + _curves_section(live)
            + _settings_section(spec, training)
            + _samples_section(path.parent, samples, inline_limit))
    page = ('<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>Evaluation</title><style>{_STYLE}</style></head>"
            f"<body><h1>Evaluation</h1>{body}</body></html>\n")
    path.write_text(page, encoding="utf-8")
    return path
