"""A report.html made from real parts: DVCLive files written by the train stage's own
writer, samples encoded by the project's encoder (one with sound, one without)."""

from __future__ import annotations

import math
from html.parser import HTMLParser
from pathlib import Path

from aiprod_recipes.inference.html_report import write_html_report
from aiprod_recipes.inference.report import TRAINING_SECTIONS, SampleEntry
from aiprod_recipes.spec import Spec
from aiprod_recipes.specio import section_values
from aiprod_recipes.training.live import LiveLog
from tests.media_fixtures import make_clip

STEPS = 6
LEVELS = ("0.0-0.5", "0.5-1.0")
METRICS = {"loss_base": 1.5, "loss_adapter": 1.25, "improvement": 0.25, "num_val_clips": 2,
           "num_samples": 2, **{f"loss_base_level_{s:g}": 1.5 for s in Spec().eval.loss_levels},
           **{f"loss_adapter_level_{s:g}": 1.25 for s in Spec().eval.loss_levels}}
TRAINING = section_values(Spec(), TRAINING_SECTIONS)
"""The training sections as a train output's provenance records them."""


def history(steps: int = STEPS) -> list[dict[str, float]]:
    """Training rows as the train stage logs them: the loss falls, one value is NaN."""
    rows = []
    for step in range(1, steps + 1):
        row = {"step": step, "loss": 2.0 / step, "grad_norm": 0.5 + step,
               "loss_video": 1.0 / step,
               **{f"loss_video_s{band}": 0.5 + k + 1.0 / step for k, band in enumerate(LEVELS)}}
        if step == 2:
            row["grad_norm"] = math.nan
        rows.append(row)
    return rows


def write_live(rows: list[dict[str, float]], folder: Path) -> None:
    """The rows through the train stage's own DVCLive writer, as it logs them."""
    live = LiveLog(folder, folder.parent / f"{folder.name}-history.jsonl", 0)
    for row in rows:
        live.log(int(row["step"]), {f"train/{k}": v for k, v in row.items() if k != "step"})
    live.close()


def make_report(folder: Path, *, inline_limit: int | None = None,
                prompt: str = "a red <b>ball</b> & a cube") -> Path:
    """report.html in ``folder`` with two samples and a DVCLive folder beside it."""
    live = folder / "train-live"
    write_live(history(), live)
    (folder / "samples").mkdir(parents=True, exist_ok=True)
    samples = []
    for k, audio in enumerate((True, False)):
        make_clip(folder / "samples" / f"sample_{k:02d}.mp4", n=9, fps=24, audio=audio,
                  width=64)
        samples.append(SampleEntry(f"samples/sample_{k:02d}.mp4", f"samples/sample_{k:02d}.png",
                                   prompt, "text_to_video", k, has_audio=audio))
    kwargs = {} if inline_limit is None else {"inline_limit": inline_limit}
    return write_html_report(folder / "report.html", Spec(), TRAINING, METRICS, samples, live,
                             **kwargs)


class Tags(HTMLParser):
    """Every start tag with its attributes, and the page's text."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]
