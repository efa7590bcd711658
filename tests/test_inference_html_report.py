"""report.html without a browser: tables, charts from DVCLive files, embedded or linked
videos, escaping, and nothing fetched from anywhere."""

from __future__ import annotations

import base64
import math
import re
from pathlib import Path

import pytest

from aiprod_recipes.inference.html_report import Curve, chart_svg, read_curves
from tests.html_report_fixtures import LEVELS, STEPS, Tags, history, make_report, write_live


def _points(polyline: dict[str, str | None]) -> list[tuple[float, float]]:
    return [tuple(map(float, p.split(","))) for p in (polyline["points"] or "").split()]


def test_curves_from_dvclive_files(tmp_path: Path) -> None:
    write_live(history(), tmp_path / "live")
    charts = read_curves(tmp_path / "live")
    assert list(charts) == ["train/loss", "train/loss_video", "train/grad_norm"]
    assert [c.label for c in charts["train/loss_video"]] == ["all"] + [f"noise {b}"
                                                                       for b in LEVELS]
    loss = charts["train/loss"][0]
    assert loss.steps == tuple(range(1, STEPS + 1))
    assert loss.values == pytest.approx([2.0 / s for s in loss.steps])
    grad = charts["train/grad_norm"][0]
    assert 2 not in grad.steps and all(math.isfinite(v) for v in grad.values)


def test_missing_or_broken_live_folder(tmp_path: Path) -> None:
    assert read_curves(tmp_path / "nowhere") == {}
    bad = tmp_path / "live" / "plots" / "metrics" / "train" / "loss.tsv"
    bad.parent.mkdir(parents=True)
    bad.write_text("step\tloss\n1\tnot-a-number\n")
    with pytest.raises(ValueError, match=r"loss\.tsv:2"):
        read_curves(tmp_path / "live")


def test_chart_geometry() -> None:
    """Later steps lie to the right; a lower loss lies lower on the page (larger y)."""
    svg = chart_svg("train/loss", [Curve("all", (1, 2, 4), (3.0, 2.0, 1.0))])
    (line,) = Tags(svg).all("polyline")
    pts = _points(line)
    assert [x for x, _ in pts] == sorted(x for x, _ in pts) and pts[0][0] < pts[-1][0]
    assert pts[0][1] < pts[1][1] < pts[2][1]
    assert pts[2][0] - pts[1][0] == pytest.approx(2 * (pts[1][0] - pts[0][0]))
    single = Tags(chart_svg("lr", [Curve("all", (5,), (0.1,))]))
    assert len(single.all("circle")) == 1
    assert "no finite values" in chart_svg("x", [Curve("all", (), ())])


def test_page_content_inline(tmp_path: Path) -> None:
    page = make_report(tmp_path).read_text()
    tags = Tags(page)
    text = " ".join(tags.text)
    charts = [a["data-chart"] for a in tags.all("svg")]
    assert charts == ["train/loss", "train/loss_video", "train/grad_norm"]
    assert len(tags.all("polyline")) == 1 + (1 + len(LEVELS)) + 1
    assert "all 1.5 1.25 0.25" in " ".join(t.strip() for t in tags.text if t.strip())
    assert f"Last logged values (step {STEPS})" in text
    videos = tags.all("video")
    assert len(videos) == 2
    for k, video in enumerate(videos):
        src = video["src"] or ""
        assert src.startswith("data:video/mp4;base64,")
        raw = base64.b64decode(src.removeprefix("data:video/mp4;base64,"))
        assert raw == (tmp_path / "samples" / f"sample_{k:02d}.mp4").read_bytes()
        assert "controls" in video
    assert "a red <b>ball</b> & a cube" in text and "<b>ball</b>" not in page
    assert "1. text_to_video, seed 0, with sound" in text
    assert "2. text_to_video, seed 1, no sound" in text
    assert not tags.all("script") and not tags.all("link")
    assert not re.search(r"""(src|href)="(https?:)?//""", page), "the page fetches something"


def test_page_links_videos_over_the_limit(tmp_path: Path) -> None:
    tags = Tags(make_report(tmp_path, inline_limit=0).read_text())
    assert [v["src"] for v in tags.all("video")] == ["samples/sample_00.mp4",
                                                     "samples/sample_01.mp4"]
    assert "keep the samples folder beside this page" in " ".join(tags.text)


def test_page_without_curves_or_samples(tmp_path: Path) -> None:
    from aiprod_recipes.inference.html_report import write_html_report
    from aiprod_recipes.spec import Spec
    from tests.html_report_fixtures import METRICS, TRAINING

    metrics = {**METRICS, "loss_base": math.nan, "loss_adapter": math.nan, "num_samples": 0}
    page = write_html_report(tmp_path / "r.html", Spec(), TRAINING, metrics, [],
                             tmp_path / "no-live").read_text()
    tags = Tags(page)
    text = " ".join(tags.text)
    assert "No DVCLive metric files" in text and "No samples" in text
    assert not tags.all("svg") and not tags.all("video")
    assert "n/a" in text


def test_conditioned_sample_shows_its_condition(tmp_path: Path) -> None:
    from aiprod_recipes.inference.html_report import write_html_report
    from aiprod_recipes.inference.report import SampleEntry, write_thumbnail
    from aiprod_recipes.spec import Spec
    from tests.html_report_fixtures import METRICS, TRAINING
    from tests.media_fixtures import make_clip

    (tmp_path / "samples").mkdir()
    make_clip(tmp_path / "samples" / "s.mp4", n=9, fps=24, audio=False, width=64)
    import numpy as np

    write_thumbnail(tmp_path / "samples" / "s_image.png", np.zeros((1, 32, 32, 3), np.uint8))
    sample = SampleEntry("samples/s.mp4", "samples/s.png", "p", "image_to_video", 0,
                         condition="samples/s_image.png")
    tags = Tags(write_html_report(tmp_path / "r.html", Spec(), TRAINING, METRICS,
                                  [sample],
                                  tmp_path / "no-live").read_text())
    (image,) = [a for a in tags.all("img") if a.get("class") == "condition"]
    assert image["alt"] == "first frame"
    assert (image["src"] or "").startswith("data:image/png;base64,")
