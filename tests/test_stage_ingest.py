"""The ingest and split stages on real clips: quarantine, incremental reuse, split stability."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from aiprod_recipes.cli import main
from aiprod_recipes.runtime import run_stage
from aiprod_recipes.stages.context import StageFailed
from aiprod_recipes.stages.split import assign, read_split
from aiprod_recipes.store.shards import ShardReader
from tests.conftest import write_spec
from tests.media_fixtures import (
    SAMPLE_DIR,
    damage_packets,
    make_audio_only,
    make_clip,
)

INGEST = Path("data/stages/ingest")


def _copy_samples(raw: Path, names: list[str]) -> None:
    for name in names:
        shutil.copy(SAMPLE_DIR / f"{name}.mp4", raw)
        shutil.copy(SAMPLE_DIR / f"{name}.txt", raw)


def test_sample_clips_with_a_cut(project: Path) -> None:
    _copy_samples(project / "raw", ["scene_cut", "pulse"])
    write_spec(project, data={"raw_dir": "raw"})
    report = run_stage("ingest")
    assert report == {"sources": 2, "processed": 2, "reused": 0, "rejected": 0, "skipped": 2,
                      "clips": 3}
    reader = ShardReader(INGEST)
    rows = {r["source"]: r for r in reader.rows}
    assert [r["source"] for r in reader.rows].count("scene_cut.mp4") == 2
    row = rows["pulse.mp4"]
    assert row["fps"] == 24.0 and row["has_audio"] and row["width"] == 256
    data = reader.item_bytes(row["item"], "mp4")
    assert data[4:8] == b"ftyp"
    assert json.loads((INGEST / "provenance.json").read_text())["spec"]["ingest"]["fps"] == 24.0


def test_one_new_clip_is_the_only_one_processed(project: Path) -> None:
    _copy_samples(project / "raw", ["pulse", "sunrise"])
    write_spec(project, data={"raw_dir": "raw"})
    run_stage("ingest")
    first = (INGEST / "manifest.jsonl").read_text()
    _copy_samples(project / "raw", ["orbits"])
    report = run_stage("ingest")
    assert (report["processed"], report["reused"], report["clips"]) == (1, 2, 3)
    (project / "raw" / "orbits.mp4").unlink()
    report = run_stage("ingest")
    assert (report["processed"], report["reused"], report["clips"]) == (0, 2, 2)
    assert (INGEST / "manifest.jsonl").read_text() == first


def _broken_inputs(raw: Path, tmp: Path) -> dict[str, str]:
    """Each kind of bad input, and a word its quarantine reason must contain."""
    (raw / "empty.mp4").write_bytes(b"")
    good = make_clip(tmp / "good.mp4", n=48, audio=True)
    (raw / "truncated.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    (raw / "noise.mp4").write_bytes(bytes(range(256)) * 40)
    (raw / "notes.mov").write_text("this is not a video\n" * 20)
    make_audio_only(raw / "audio_only.mp4")
    damage_packets(good, raw / "all_garbage.mp4", slice(None))
    make_clip(raw / "huge.mp4", n=30, width=320)
    return {"empty.mp4": "empty", "truncated.mp4": "truncated", "noise.mp4": "not a media file",
            "notes.mov": "not a media file", "audio_only.mp4": "no video",
            "all_garbage.mp4": "no decodable video frames",
            "huge.mp4": "exceeds the 256x4320 limit"}


def _odd_sized(path: Path) -> None:
    """An H.264 clip with an odd frame size (4:4:4 allows it; 4:2:0 output does not)."""
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = 129, 97, "yuv444p"
        for i in range(24):
            rgb = np.full((97, 129, 3), i * 5, np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv444p")
            frame.pts = i
            c.mux(s.encode(frame))
        c.mux(s.encode(None))


def test_bad_media_is_quarantined_and_the_rest_goes_on(project: Path, tmp_path_factory,
                                                       capsys) -> None:
    raw = project / "raw"
    expected = _broken_inputs(raw, tmp_path_factory.mktemp("src"))
    _odd_sized(raw / "odd.mp4")  # odd sizes lose their last row and column, nothing else
    good = make_clip(tmp_path_factory.mktemp("g") / "g.mp4", n=72, audio=True)
    damage_packets(good, raw / "mid_damage.mp4", slice(30, 32))
    _copy_samples(raw, ["pulse"])
    write_spec(project, data={"raw_dir": "raw"}, ingest={"max_width": 256})
    report = run_stage("ingest")
    quarantine = json.loads((INGEST / "quarantine.json").read_text())
    rejected = {r["source"]: r["reason"] for r in quarantine["rejected"]}
    assert set(rejected) == set(expected)
    for name, word in expected.items():
        assert word in rejected[name], (name, rejected[name])
    rows = {r["source"]: r for r in ShardReader(INGEST).rows}
    assert set(rows) == {"pulse.mp4", "mid_damage.mp4", "odd.mp4"}
    assert (rows["odd.mp4"]["width"], rows["odd.mp4"]["height"]) == (128, 96)
    assert report["rejected"] == len(expected)
    err = capsys.readouterr().err
    assert f"{len(expected)} of 10 input(s) quarantined" in err
    damaged = quarantine["damaged"]
    assert {d["source"] for d in damaged} == {"mid_damage.mp4"}
    assert all(d["what"].startswith("bad packet") and d["time_s"] > 0 for d in damaged)


def test_strict_mode_and_nothing_usable_fail(project: Path) -> None:
    (project / "raw" / "empty.mp4").write_bytes(b"")
    write_spec(project, data={"raw_dir": "raw"})
    with pytest.raises(StageFailed, match="no usable clip"):
        run_stage("ingest")
    assert not INGEST.exists()
    _copy_samples(project / "raw", ["pulse"])
    write_spec(project, data={"raw_dir": "raw"}, ingest={"strict": True})
    assert main(["run", "ingest"]) == 1
    assert not INGEST.exists()


def test_split_is_stable_when_clips_are_added() -> None:
    clips = [{"item": f"c{i}", "content_hash": f"{i:064x}"} for i in range(200)]
    before = assign(clips[:100], 0.2, seed=3)
    after = assign(clips, 0.2, seed=3)
    assert before == after & {c["item"] for c in clips[:100]}
    assert 8 <= len(before) <= 35
    two = assign(clips[:2], 0.01, seed=0)
    assert len(two) == 1


def test_split_stage(project: Path) -> None:
    _copy_samples(project / "raw", ["pulse", "sunrise", "orbits"])
    write_spec(project, data={"raw_dir": "raw"}, split={"val_fraction": 0.3, "seed": 0})
    run_stage("ingest")
    run_stage("split")
    train = read_split(Path("data/stages/split"), "train")
    val = read_split(Path("data/stages/split"), "val")
    assert len(val) >= 1 and len(train) + len(val) == 3
    assert not set(train) & set(val)


def test_a_byte_identical_copy_is_reported_once(project: Path) -> None:
    _copy_samples(project / "raw", ["pulse"])
    (project / "raw" / "sub").mkdir()
    shutil.copy(project / "raw" / "pulse.mp4", project / "raw" / "sub" / "pulse.mp4")
    write_spec(project, data={"raw_dir": "raw"})
    report = run_stage("ingest")
    assert (report["clips"], report["rejected"]) == (1, 1)
    rejected = json.loads((INGEST / "quarantine.json").read_text())["rejected"]
    assert rejected == [{"source": "sub/pulse.mp4",
                         "reason": "duplicate of pulse.mp4 (same bytes)"}]
