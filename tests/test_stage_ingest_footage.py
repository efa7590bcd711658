"""Real-world footage through ingest: other containers, odd frame sizes, stray files in the
raw folder, and damage that keeps its time in the source across reruns."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from aiprod_recipes import names
from aiprod_recipes.media.sources import AUDIO_ONLY, CAPTION_FILE, HIDDEN_FILE, NOT_MEDIA
from aiprod_recipes.media.video import decode_frames
from aiprod_recipes.names import CLIP_TENSOR, QUARANTINE_FILE, stage_dir
from aiprod_recipes.runtime import run_stage
from aiprod_recipes.stages import ingest
from aiprod_recipes.store.shards import ShardReader
from tests.conftest import write_spec
from tests.media_fixtures import SAMPLE_DIR, damage_packets, make_clip, make_mpeg2, pattern_frames
from tests.test_media_sources import write_pdf, write_wav

INGEST = stage_dir(names.INGEST)
QUARANTINE = INGEST / QUARANTINE_FILE


def _frames_of(data: bytes) -> np.ndarray:
    with tempfile.NamedTemporaryFile(suffix=".mp4") as f:
        f.write(data)
        f.flush()
        return decode_frames(f.name, 24)


def test_mpeg2_with_an_odd_frame_size_goes_end_to_end(project: Path) -> None:
    make_mpeg2(project / "raw" / "dvd.mpg", n=40)  # 721x405, 1.6 s, MP2 sound
    write_spec(project, data={"raw_dir": "raw"}, ingest={"detector": {"type": "none"}})
    run_stage("base")
    report = run_stage("ingest")
    assert (report["clips"], report["rejected"]) == (1, 0)
    assert json.loads(QUARANTINE.read_text())["damaged"] == []
    row = ShardReader(INGEST).rows[0]
    assert (row["source"], row["width"], row["height"], row["has_audio"]) == \
        ("dvd.mpg", 720, 404, True)
    frames = _frames_of(ShardReader(INGEST).item_bytes(row["item"], CLIP_TENSOR))
    assert frames.shape[1:] == (404, 720, 3)
    # The last column and row were dropped, not the picture rescaled: pixels stay in place
    # (the rest of the difference is the two lossy codecs' 4:2:0 colour).
    source = pattern_frames(1, width=721, height=405)[0]
    rescaled = cv2.resize(source, (720, 404), interpolation=cv2.INTER_AREA)
    kept = np.abs(frames[0].astype(int) - source[:404, :720]).mean()
    assert kept < min(np.abs(frames[0].astype(int) - rescaled).mean(), 8)
    latents = run_stage("latents")  # the bucket takes the 720x404 picture as any other
    assert (latents["clips"], latents["encoded"], latents["skipped"]) == (1, 1, 0)


def test_audio_and_stray_files_are_listed_once_as_skipped(project: Path, capsys) -> None:
    raw = project / "raw"
    shutil.copy(SAMPLE_DIR / "pulse.mp4", raw)
    shutil.copy(SAMPLE_DIR / "pulse.txt", raw)
    write_wav(raw / "tone.wav")
    write_pdf(raw / "notes.pdf")
    (raw / ".DS_Store").write_bytes(bytes(64))
    # Skipped files are not bad clips: strict mode, which stops on a bad clip, lets them be.
    write_spec(project, data={"raw_dir": "raw"}, ingest={"strict": True})
    report = run_stage("ingest")
    assert (report["clips"], report["rejected"], report["skipped"]) == (1, 0, 4)
    assert json.loads(QUARANTINE.read_text())["skipped"] == [
        {"source": ".DS_Store", "reason": HIDDEN_FILE},
        {"source": "notes.pdf", "reason": NOT_MEDIA},
        {"source": "pulse.txt", "reason": CAPTION_FILE},
        {"source": "tone.wav", "reason": AUDIO_ONLY},
    ]
    lines = [line for line in capsys.readouterr().err.splitlines()
             if line.startswith("ingest:") and "skipped" in line]
    assert len(lines) == 1
    assert "4 file(s) skipped as not clips" in lines[0]
    assert "tone.wav" in lines[0] and "notes.pdf" in lines[0] and ".DS_Store" in lines[0]


def _packet_time(path: Path, index: int) -> float:
    """Presentation time of the video packet ``damage_packets`` counts as ``index``."""
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(video=0) if p.size and p.pos >= 0]
    return round(float(packets[index].pts * packets[index].time_base), 6)


def test_damage_keeps_its_packet_time_when_clips_are_reused(project: Path, tmp_path) -> None:
    clean = make_clip(tmp_path / "clean.mp4", n=96)  # 4 s: four 1 s scenes
    damage_packets(clean, project / "raw" / "hurt.mp4", slice(60, 61))
    bad_at = _packet_time(clean, 60)
    write_spec(project, data={"raw_dir": "raw"},
               ingest={"detector": {"type": "none"}, "max_duration_s": 1.0})
    run_stage("ingest")
    rows = ShardReader(INGEST).rows
    holder = next(r for r in rows if r["start_s"] <= bad_at < r["end_s"])
    damaged = json.loads(QUARANTINE.read_text())["damaged"]
    # One entry, in the scene that holds the packet, whatever else decoding passed over.
    assert [(d["source"], d["time_s"], d["stream"], d["item"]) for d in damaged] == \
        [("hurt.mp4", bad_at, "video", holder["item"])]
    assert damaged[0]["what"].startswith("bad packet")
    first = QUARANTINE.read_text()

    shutil.copy(SAMPLE_DIR / "pulse.mp4", project / "raw")
    report = run_stage("ingest")
    assert (report["reused"], report["processed"]) == (1, 1)
    assert json.loads(QUARANTINE.read_text())["damaged"] == damaged
    (project / "raw" / "pulse.mp4").unlink()
    assert run_stage("ingest")["reused"] == 1
    assert QUARANTINE.read_text() == first


def test_the_number_of_workers_never_changes_the_output(project: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    raw = project / "raw"
    for name in ("pulse", "scene_cut", "orbits", "sunrise"):
        shutil.copy(SAMPLE_DIR / f"{name}.mp4", raw)
    damage_packets(make_clip(tmp_path / "c.mp4", n=48), raw / "hurt.mp4", slice(20, 21))
    make_mpeg2(raw / "dvd.mpg", n=30, width=97, height=65)
    (raw / "empty.mp4").write_bytes(b"")
    write_spec(project, data={"raw_dir": "raw"})
    outputs = []
    for count in (1, 3):
        monkeypatch.setattr(ingest, "workers", lambda count=count: count)
        shutil.rmtree(INGEST, ignore_errors=True)
        run_stage("ingest")
        outputs.append({p.name: p.read_bytes() for p in sorted(INGEST.iterdir())})
    assert outputs[0] == outputs[1]
    assert len(json.loads(outputs[0][QUARANTINE_FILE])["damaged"]) >= 1
