"""find_clips: which files under the raw folder are clips, and why the others are skipped."""

from __future__ import annotations

import wave
from pathlib import Path

import av
import numpy as np

from aiprod_recipes.media.sources import (
    AUDIO_ONLY,
    CAPTION_FILE,
    CAPTION_SUFFIXES,
    HIDDEN_FILE,
    HIDDEN_FOLDER,
    NO_VIDEO,
    NOT_LISTED,
    NOT_MEDIA,
    STILL_IMAGE,
    find_clips,
    sniff,
)
from tests.media_fixtures import make_clip, make_mpeg2


def write_wav(path: Path, seconds: float = 0.5) -> Path:
    """A mono 16-bit PCM .wav, the usual stray audio file."""
    t = np.arange(round(seconds * 16000)) / 16000
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16).tobytes())
    return path


def write_pdf(path: Path) -> Path:
    """A document with random bytes after a PDF header."""
    path.write_bytes(b"%PDF-1.4\n" + np.random.default_rng(0).bytes(4000))
    return path


def _still(path: Path) -> Path:
    with av.open(str(path), "w", format="image2") as c:
        s = c.add_stream("png", rate=1)
        s.width, s.height, s.pix_fmt = 32, 24, "rgb24"
        frame = av.VideoFrame.from_ndarray(np.zeros((24, 32, 3), np.uint8), format="rgb24")
        frame.pts = 0
        c.mux(s.encode(frame))
        c.mux(s.encode(None))
    return path


def _raw_folder(raw: Path) -> None:
    """Clips in known and unknown containers next to everything a real folder collects."""
    make_clip(raw / "a.mp4", n=12)
    (raw / "a.txt").write_text("a caption\n")
    (raw / "a.mp4.json").write_text('{"caption": "x"}')
    (raw / "captions.csv").write_text("file,caption\na.mp4,x\n")
    make_mpeg2(raw / "dvd.mpg", n=6)
    make_clip(raw / "camera.dat", n=12)  # an mp4 under a name no list would guess
    (raw / "sub").mkdir()
    make_clip(raw / "sub" / "b.MOV", n=12)  # suffixes compare lower-cased
    write_wav(raw / "tone.wav")
    write_pdf(raw / "notes.pdf")
    (raw / "README.md").write_text("# footage\n" * 20)
    (raw / "info.nfo").write_text("release notes\n" * 20)  # FFmpeg reads it as ANSI art
    (raw / "subs.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nHello\n\n")
    _still(raw / "photo.png")
    (raw / "blank.bin").write_bytes(b"")
    make_clip(raw / ".hidden.mp4", n=12)
    (raw / ".cache").mkdir()
    make_clip(raw / ".cache" / "c.mp4", n=12)


def test_probing_finds_clips_in_any_container_and_lists_the_rest(tmp_path: Path) -> None:
    _raw_folder(tmp_path)
    clips, skipped = find_clips(tmp_path)
    assert clips == ["a.mp4", "camera.dat", "dvd.mpg", "sub/b.MOV"]
    assert [(s.source, s.reason) for s in skipped] == [
        (".cache/", HIDDEN_FOLDER),
        (".hidden.mp4", HIDDEN_FILE),
        ("README.md", NOT_MEDIA),
        ("a.mp4.json", CAPTION_FILE),
        ("a.txt", CAPTION_FILE),
        ("blank.bin", f"{NOT_MEDIA} (empty)"),
        ("captions.csv", CAPTION_FILE),
        ("info.nfo", NOT_MEDIA),
        ("notes.pdf", NOT_MEDIA),
        ("photo.png", STILL_IMAGE),
        ("subs.srt", NO_VIDEO),
        ("tone.wav", AUDIO_ONLY),
    ]


def test_an_allow_list_opens_nothing_and_names_the_rest(tmp_path: Path) -> None:
    _raw_folder(tmp_path)
    clips, skipped = find_clips(tmp_path, [".mp4", ".mov"])
    assert clips == ["a.mp4", "sub/b.MOV"]
    reasons = {s.source: s.reason for s in skipped}
    assert reasons["dvd.mpg"] == reasons["tone.wav"] == reasons["camera.dat"] == NOT_LISTED
    assert reasons["a.txt"] == CAPTION_FILE and reasons[".hidden.mp4"] == HIDDEN_FILE


def test_sniff_takes_an_animated_gif_as_video(tmp_path: Path) -> None:
    path = tmp_path / "loop.gif"
    with av.open(str(path), "w") as c:
        s = c.add_stream("gif", rate=10)
        s.width, s.height, s.pix_fmt = 32, 24, "rgb8"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((24, 32, 3), i * 40, np.uint8), "rgb24")
            frame.pts = i
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    assert sniff(path) is None


def test_caption_sidecars_are_never_taken_for_clips() -> None:
    from aiprod_recipes.captioning.sidecar import sidecar_candidates

    names = [*sidecar_candidates(Path("raw"), "clip.mp4"), Path("captions.jsonl")]
    assert {p.suffix for p in names} <= CAPTION_SUFFIXES
