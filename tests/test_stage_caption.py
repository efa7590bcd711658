"""The caption stage: sidecar captions, missing-caption policy, reuse, Gemini through the stage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from aiprod_recipes.runtime import run_stage
from aiprod_recipes.stages.caption import read_captions
from aiprod_recipes.stages.context import StageFailed
from tests.caption_fixtures import FakeGeminiServer
from tests.conftest import write_spec
from tests.media_fixtures import SAMPLE_DIR

CAPTIONS = Path("data/stages/caption")


def _samples(raw: Path, names: list[str], captions: bool = True) -> None:
    for name in names:
        shutil.copy(SAMPLE_DIR / f"{name}.mp4", raw)
        if captions:
            shutil.copy(SAMPLE_DIR / f"{name}.txt", raw)


def test_sidecar_captions_with_trigger_and_reuse(project: Path) -> None:
    _samples(project / "raw", ["pulse", "scene_cut"])
    write_spec(project, data={"raw_dir": "raw"}, caption={"trigger_word": "zq"})
    run_stage("ingest")
    assert run_stage("caption") == {"captioned": 3, "reused": 0, "failed": 0, "missing": 0}
    captions = read_captions(CAPTIONS)
    expected = (SAMPLE_DIR / "pulse.txt").read_text().split()
    pulse = next(text for item, text in captions.items() if item.startswith("pulse-"))
    assert pulse.split() == ["zq", *expected]
    _samples(project / "raw", ["sunrise"])
    run_stage("ingest")
    assert run_stage("caption") == {"captioned": 1, "reused": 3, "failed": 0, "missing": 0}


def test_missing_caption_error_or_drop(project: Path) -> None:
    _samples(project / "raw", ["pulse"])
    _samples(project / "raw", ["sunrise"], captions=False)
    write_spec(project, data={"raw_dir": "raw"})
    run_stage("ingest")
    with pytest.raises(StageFailed, match=r"no caption for 1 clip.*sunrise"):
        run_stage("caption")
    assert not CAPTIONS.exists()
    write_spec(project, data={"raw_dir": "raw"}, caption={"on_missing": "drop"})
    assert run_stage("caption")["missing"] == 1
    assert [c.split("-")[0] for c in read_captions(CAPTIONS)] == ["pulse"]


def test_gemini_backend_through_the_stage(project: Path, monkeypatch) -> None:
    secret = "AIza-test-key-never-written-0123456789"
    monkeypatch.setenv("TEST_GEMINI_KEY", secret)
    _samples(project / "raw", ["pulse", "orbits"], captions=False)
    with FakeGeminiServer(caption="Here is a caption: **A red ball** pulses.") as server:
        backend = {"type": "gemini", "api_key_env": "TEST_GEMINI_KEY",
                   "base_url": server.base_url, "max_retries": 0}
        write_spec(project, data={"raw_dir": "raw"}, caption={"backend": backend})
        run_stage("ingest")
        assert run_stage("caption")["captioned"] == 2
        assert len(server.requests) == 2
        assert all(r[2]["x-goog-api-key"] == secret for r in server.requests)
    assert set(read_captions(CAPTIONS).values()) == {"aiprod A red ball pulses."}
    for path in project.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    provenance = json.loads((CAPTIONS / "provenance.json").read_text())
    assert provenance["spec"]["caption"]["backend"]["api_key_env"] == "TEST_GEMINI_KEY"
