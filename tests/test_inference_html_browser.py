"""report.html in a real headless Chromium: it opens from disk, fetches nothing from the
network, every video loads and plays (with its sound when it has one), and the charts
are drawn.

Needs Playwright (the dev extra) and a Chromium that plays H.264 + AAC: Debian's
``chromium`` package does (stock Chromium builds leave these codecs out), so the test drives
the system browser and skips, saying what to install, when either is missing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aiprod_recipes.names import EVALUATE, REPORT_HTML_FILE, STAGES_DIR
from tests.e2e_fixtures import SPEC_OVERRIDES, shared_project
from tests.html_report_fixtures import LEVELS, make_report

INSTALL = ("pip install playwright (in the dev extra) and a system Chromium "
           "(apt-get install chromium)")
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
VIDEOS = "[...document.querySelectorAll('video')]"


def _system_chromium() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(f"playwright is not installed: {INSTALL}")
    executable = _system_chromium()
    if executable is None:
        pytest.skip(f"no system Chromium on PATH: {INSTALL}")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable,
                                      args=["--autoplay-policy=no-user-gesture-required"])
        try:
            yield chromium
        finally:
            chromium.close()


def _open(browser: Any, report: Path) -> tuple[Any, list[str]]:
    """The page, and a list that collects script errors and any request off the disk."""
    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: None if r.url.startswith(("file:", "data:"))
            else problems.append(f"fetched {r.url}"))
    page.goto(report.as_uri())
    return page, problems


def _play_all(page: Any) -> list[dict[str, Any]]:
    """Wait for every video's metadata, play them all, wait until each has advanced."""
    page.wait_for_function(f"{VIDEOS}.every(v => v.error || v.readyState >= 1)")
    loaded = page.evaluate(f"{VIDEOS}.map(v => v.error && v.error.code)")
    assert loaded == [None] * len(loaded), f"media errors: {loaded}"
    page.evaluate(f"Promise.all({VIDEOS}.map(v => v.play()))")
    page.wait_for_function(f"{VIDEOS}.every(v => v.error || v.ended || v.currentTime > 0)")
    played = page.evaluate(f"""{VIDEOS}.map(v => ({{error: v.error && v.error.code,
        duration: v.duration, width: v.videoWidth, height: v.videoHeight,
        time: v.currentTime, ended: v.ended, ready: v.readyState,
        audio: v.webkitAudioDecodedByteCount, frames: v.webkitDecodedFrameCount}}))""")
    for video in played:
        assert video["error"] is None, video
        assert video["duration"] > 0 and (video["time"] > 0 or video["ended"]), video
        assert video["ready"] >= 2 and video["frames"] > 0, video
    return played


def _charts(page: Any) -> list[dict[str, Any]]:
    """Every chart's name, drawn width and its curves (points, drawn length); a curve of
    one point is drawn as a dot."""
    charts = page.evaluate("""[...document.querySelectorAll('svg.chart')].map(s => ({
        name: s.dataset.chart, width: s.getBoundingClientRect().width,
        dots: s.querySelectorAll('circle').length,
        lines: [...s.querySelectorAll('polyline')].map(
            p => [p.points.numberOfItems, p.getTotalLength()])}))""")
    for chart in charts:
        assert chart["width"] > 0 and chart["lines"], chart
        assert all(length > 0 for n, length in chart["lines"] if n > 1), chart
        assert chart["dots"] == sum(n == 1 for n, _ in chart["lines"]), chart
    return charts


@pytest.mark.parametrize("inline", [True, False], ids=["embedded", "linked"])
def test_report_opens_and_plays(browser: Any, tmp_path: Path, inline: bool) -> None:
    page, problems = _open(browser, make_report(tmp_path, inline_limit=None if inline else 0))
    played = _play_all(page)
    assert [(v["width"], v["height"]) for v in played] == [(64, 96), (64, 96)]
    with_sound, silent = played
    assert with_sound["audio"] > 0 and silent["audio"] == 0
    charts = _charts(page)
    assert [c["name"] for c in charts] == ["train/loss", "train/loss_video", "train/grad_norm"]
    assert [len(c["lines"]) for c in charts] == [1, 1 + len(LEVELS), 1]
    assert not problems
    page.close()


@pytest.mark.slow
def test_evaluate_stage_report_plays(browser: Any,
                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    """The page the evaluate stage wrote after a real ``dvc repro`` of the pipeline: the
    real sampler's mp4 (with sound) plays, the real train stage's curves are drawn."""
    project = shared_project(tmp_path_factory, "e2e-built", run=True)
    report = project / STAGES_DIR / EVALUATE / REPORT_HTML_FILE
    page, problems = _open(browser, report)
    played = _play_all(page)
    assert len(played) == SPEC_OVERRIDES["eval"]["max_samples"]
    assert all(v["audio"] > 0 for v in played)
    assert "train/loss" in [c["name"] for c in _charts(page)]
    assert not problems
    page.close()
