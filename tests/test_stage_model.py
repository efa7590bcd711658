"""base, embed, latents and reference on the tiny model: shapes, reuse, determinism, silence."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from aiprod_recipes.model.header import checkpoint_fingerprint
from aiprod_recipes.model.vae import audio_latent_frames, video_latent_shape
from aiprod_recipes.runtime import run_stage
from aiprod_recipes.store.shards import ShardReader
from tests.conftest import write_spec
from tests.media_fixtures import SAMPLE_DIR, make_clip

STAGES = Path("data/stages")
BUCKETS = [{"width": 64, "height": 64, "frames": 9}, {"width": 96, "height": 64, "frames": 17}]


def _prepare(project: Path, names: list[str], **sections: dict) -> None:
    for name in names:
        shutil.copy(SAMPLE_DIR / f"{name}.mp4", project / "raw")
        shutil.copy(SAMPLE_DIR / f"{name}.txt", project / "raw")
    write_spec(project, **{"data": {"raw_dir": "raw"}, "video": {"buckets": BUCKETS}, **sections})


def _run(*stages: str) -> dict[str, dict]:
    return {stage: run_stage(stage) for stage in stages}


def test_shapes_reuse_and_identical_bytes(project: Path) -> None:
    _prepare(project, ["pulse", "sunrise"])
    _run("base", "ingest", "caption", "embed", "latents")
    latents = ShardReader(STAGES / "latents")
    for row in latents.rows:
        assert row["bucket"] == "96x64x17"  # 4:3 clips take the nearest aspect ratio
        t = latents.tensors(row["key"])
        assert tuple(t["video"].shape) == video_latent_shape(17, 64, 96)
        assert tuple(t["audio"].shape) == (8, audio_latent_frames(17 / 24), 16)
    provenance = json.loads((STAGES / "latents" / "provenance.json").read_text())
    checkpoint = STAGES / "base" / "ltx2.safetensors"
    assert provenance["model_fingerprint"] == checkpoint_fingerprint(checkpoint)
    embed = ShardReader(STAGES / "embed")
    features = embed.tensors(embed.rows[0]["key"])
    assert features["video"].shape[0] == features["mask"].shape[0] == 128
    first = {p.name: p.read_bytes() for p in (STAGES / "latents").iterdir()}

    shutil.copy(SAMPLE_DIR / "orbits.mp4", project / "raw")
    shutil.copy(SAMPLE_DIR / "orbits.txt", project / "raw")
    reports = _run("ingest", "caption", "embed", "latents")
    assert (reports["latents"]["encoded"], reports["latents"]["reused"]) == (1, 2)
    assert (reports["embed"]["encoded"], reports["embed"]["reused"]) == (1, 2)

    (project / "raw" / "orbits.mp4").unlink()
    (project / "raw" / "orbits.txt").unlink()
    shutil.rmtree(STAGES / "latents")
    _run("ingest", "caption", "embed", "latents")
    again = {p.name: p.read_bytes() for p in (STAGES / "latents").iterdir()}
    assert again == first


def test_items_made_by_other_code_are_made_again(project: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A workspace updated to new code must hold what a fresh clone computes: items stored
    under another code digest are not reused."""
    from aiprod_recipes import runtime

    _prepare(project, ["pulse"])
    _run("base", "ingest", "caption", "embed", "latents")
    assert _run("latents")["latents"]["reused"] == 1
    monkeypatch.setattr(runtime, "stage_code_digest", lambda stage: "other code")
    reports = _run("ingest", "caption", "embed", "latents")
    for stage in ("ingest", "embed", "latents"):
        assert reports[stage]["reused"] == 0, stage
    assert reports["caption"]["reused"] == 0  # sidecar captions are made by our code


@pytest.mark.parametrize("policy", ["silence", "skip"])
def test_clip_without_audio(project: Path, policy: str) -> None:
    _prepare(project, ["pulse"], audio={"on_missing": policy})
    make_clip(project / "raw" / "silent.mp4", n=24, width=128)
    (project / "raw" / "silent.txt").write_text("Colour ramps slide across the screen.")
    _run("base", "ingest", "caption", "embed")
    report = run_stage("latents")
    reader = ShardReader(STAGES / "latents")
    silent = [r for r in reader.rows if r["item"].startswith("silent")]
    if policy == "skip":
        assert report["skipped"] == 1 and not silent
    else:
        assert silent and not silent[0]["has_audio"]
        assert reader.tensors(silent[0]["key"])["audio"].shape[0] == 8


def test_reference_latents(project: Path) -> None:
    _prepare(project, ["pulse"], reference={"enabled": True, "downscale": 2},
             strategy={"type": "video_to_video"},
             video={"buckets": [{"width": 128, "height": 64, "frames": 9}]})
    _run("base", "ingest")
    report = run_stage("reference")
    assert report["encoded"] == 1
    reader = ShardReader(STAGES / "reference")
    latent = reader.tensors(reader.rows[0]["key"])["video"]
    assert tuple(latent.shape) == video_latent_shape(9, 32, 64)


def test_reference_off_writes_an_empty_manifest(project: Path) -> None:
    _prepare(project, ["pulse"])
    _run("base", "ingest")
    assert run_stage("reference") == {"enabled": False, "clips": 0}
    assert (STAGES / "reference" / "manifest.jsonl").read_text() == ""


def test_decode_command_writes_both_streams(project: Path) -> None:
    import av

    from aiprod_recipes.cli import main

    _prepare(project, ["pulse"])
    _run("base", "ingest", "latents")
    item = ShardReader(STAGES / "latents").rows[0]["item"]
    assert main(["decode", item, "--out", "decoded.mp4"]) == 0
    with av.open("decoded.mp4") as container:
        kinds = sorted(s.type for s in container.streams)
        frames = sum(1 for _ in container.decode(video=0))
    assert kinds == ["audio", "video"] and frames == 17
    assert main(["decode", "no-such-clip"]) == 2


def test_tiled_encode_matches_untiled_shapes(project: Path) -> None:
    _prepare(project, ["pulse"], video={"buckets": BUCKETS, "tiled_encode": True})
    _run("base", "ingest")
    assert run_stage("latents")["encoded"] == 1
    reader = ShardReader(STAGES / "latents")
    latent = reader.tensors(reader.rows[0]["key"])["video"]
    assert tuple(latent.shape) == video_latent_shape(17, 64, 96)
    assert torch.isfinite(latent.float()).all()
