"""metrics.json and report.md: keys, NaN as null, thumbnails, links and escaping."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np

from aiprod_recipes.inference.report import (
    TRAINING_SECTIONS,
    SampleEntry,
    spec_summary,
    write_metrics,
    write_report,
    write_thumbnail,
)
from aiprod_recipes.spec import Spec
from aiprod_recipes.specio import section_values

METRICS = {"loss_base": 1.5, "loss_adapter": 1.25, "improvement": 0.25, "num_val_clips": 2,
           "num_samples": 1, **{f"loss_base_level_{s:g}": 1.5 for s in Spec().eval.loss_levels},
           **{f"loss_adapter_level_{s:g}": 1.25 for s in Spec().eval.loss_levels}}


TRAINING = section_values(Spec(), TRAINING_SECTIONS)


def test_thumbnail_is_first_and_middle_frame(tmp_path: Path) -> None:
    frames = np.zeros((9, 16, 8, 3), np.uint8)
    frames[0, ..., 0] = 200
    frames[4, ..., 2] = 100
    path = write_thumbnail(tmp_path / "t.png", frames)
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert rgb.shape == (16, 16, 3)
    assert tuple(rgb[0, 0]) == (200, 0, 0) and tuple(rgb[0, 8]) == (0, 0, 100)


def test_metrics_json_nan_is_null(tmp_path: Path) -> None:
    write_metrics(tmp_path / "m.json", {"loss_base": math.nan, "num_val_clips": 0})
    assert json.loads((tmp_path / "m.json").read_text()) == {"loss_base": None,
                                                              "num_val_clips": 0}


def test_report_page(tmp_path: Path) -> None:
    sample = SampleEntry("samples/s.mp4", "samples/s.png", "a | b\nc", "text_to_video", 4)
    text = write_report(tmp_path / "r.md", Spec(), TRAINING, METRICS, [sample]).read_text()
    assert "| all | 1.5 | 1.25 | 0.25 |" in text
    assert "| 0.1 | 1.5 | 1.25 | 0.25 |" in text
    assert "[![sample 1](samples/s.png)](samples/s.mp4)" in text
    assert "> a \\| b c" in text and "seed 4" in text
    assert "| strategy | type=text_to_video" in text
    assert set(spec_summary(Spec(), TRAINING)) == {"strategy", "lora", "optim", "train",
                                                    "eval"}


def test_report_without_samples_or_val_clips(tmp_path: Path) -> None:
    metrics = {**METRICS, "loss_base": math.nan, "loss_adapter": math.nan, "num_samples": 0}
    text = write_report(tmp_path / "r.md", Spec(), TRAINING, metrics, []).read_text()
    assert "| all | n/a | n/a | n/a |" in text and "No samples" in text


def test_conditions_beside_the_output_and_sound(tmp_path: Path) -> None:
    samples = [
        SampleEntry("samples/a.mp4", "samples/a.png", "p", "image_to_video", 0, has_audio=True,
                    condition="samples/a_image.png"),
        SampleEntry("samples/b.mp4", "samples/b.png", "q", "video_to_video", 1,
                    condition="samples/b_reference.png",
                    condition_video="samples/b_reference.mp4"),
    ]
    text = write_report(tmp_path / "r.md", Spec(), TRAINING, METRICS, samples).read_text()
    assert ("| ![first frame 1](samples/a_image.png) | "
            "[![sample 1](samples/a.png)](samples/a.mp4) |") in text
    assert ("| [![reference 2](samples/b_reference.png)](samples/b_reference.mp4) | "
            "[![sample 2](samples/b.png)](samples/b.mp4) |") in text
    first, second = text.split("### 2.")
    assert "Sound: yes." in first and "Sound: none (video only)." in second


def test_the_summary_counts_samples_with_sound(capsys) -> None:
    from aiprod_recipes.stages.evaluate import _summary

    silent = SampleEntry("s/a.mp4", "s/a.png", "p", "video_to_video", 0, has_audio=False)
    _summary(Path("a.safetensors"), Path("out"), [silent], METRICS)
    assert "(1 mp4, 0 with sound)" in capsys.readouterr().err
