"""Which files in the raw folder are clips, and why every other file is skipped.

Real footage arrives in whatever container the camera or the download wrote (MPEG-2 ``.mpg``,
camcorder ``.mts``, broadcast ``.ts``, ``.mxf``, ``.wmv``, ...), and no list of extensions
keeps up with it. So, unless ``data.extensions`` narrows the choice, every file that is not
hidden and not a caption file is a candidate, and the container decides: a file named like a
video is a clip (if it turns out broken, ingest rejects it with a reason), and any other file
is opened once and kept only when FFmpeg finds a moving picture in it. Every file that is
passed over is listed with its reason, so nothing is lost without a word.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import av

CAPTION_SUFFIXES = frozenset({".txt", ".json", ".jsonl", ".csv", ".tsv"})
"""Caption sidecars and caption manifests (read by the caption stage, never clips)."""

VIDEO_SUFFIXES = frozenset({
    ".3g2", ".3gp", ".asf", ".avi", ".divx", ".dv", ".f4v", ".flv", ".m2t", ".m2ts", ".m2v",
    ".m4v", ".mkv", ".mod", ".mov", ".mp4", ".mpe", ".mpeg", ".mpg", ".mts", ".mxf", ".nut",
    ".ogm", ".ogv", ".qt", ".rm", ".rmvb", ".tod", ".ts", ".vob", ".webm", ".wmv",
    ".y4m",
})
"""Names that say "video": such a file is a clip even when it cannot be read (then ingest
rejects it as broken, and strict mode stops), where a file with another name that FFmpeg
cannot read as video is merely skipped."""

TEXT_ART_FORMATS = frozenset({"tty", "bin", "xbin", "adf", "idf"})
"""FFmpeg demuxers that render text files as pictures (ANSI art); never footage."""

HIDDEN_FILE = "hidden file"
HIDDEN_FOLDER = "hidden folder (not searched)"
CAPTION_FILE = "caption sidecar"
NOT_LISTED = "extension not in data.extensions"
NOT_MEDIA = "not a media file"
STILL_IMAGE = "still image, not a video"
AUDIO_ONLY = "audio only (no video stream)"
NO_VIDEO = "no video stream"


@dataclass(frozen=True)
class Skipped:
    """A file under the raw folder that is not a clip, and why."""

    source: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"source": self.source, "reason": self.reason}


def _walk(raw_dir: Path) -> tuple[list[str], list[Skipped]]:
    """Every file below ``raw_dir`` as a posix path relative to it, sorted; hidden folders
    are listed once and not entered (a ``.git`` or cache folder can hold thousands of files)."""
    files: list[str] = []
    skipped: list[Skipped] = []
    for folder, dirs, names in os.walk(raw_dir):
        rel = PurePosixPath(Path(folder).relative_to(raw_dir).as_posix())
        for d in sorted(dirs):
            if d.startswith("."):
                skipped.append(Skipped(f"{(rel / d).as_posix()}/", HIDDEN_FOLDER))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files.extend((rel / n).as_posix() for n in names if (Path(folder) / n).is_file())
    return sorted(files), skipped


def sniff(path: Path) -> str | None:
    """None when FFmpeg finds a moving picture in ``path``, else why it is not a clip."""
    if path.stat().st_size == 0:
        return f"{NOT_MEDIA} (empty)"
    try:
        container = av.open(str(path), mode="r")
    except av.error.FFmpegError:
        return NOT_MEDIA
    with container:
        if container.format.name in TEXT_ART_FORMATS:
            return NOT_MEDIA
        if container.streams.video:
            name = container.format.name
            return STILL_IMAGE if name == "image2" or name.endswith("_pipe") else None
        return AUDIO_ONLY if container.streams.audio else NO_VIDEO


def _classify(raw_dir: Path, source: str, allowed: frozenset[str]) -> str | None:
    """None for a clip, else the reason ``source`` is skipped."""
    name = PurePosixPath(source).name
    suffix = PurePosixPath(source).suffix.lower()
    if name.startswith("."):
        return HIDDEN_FILE
    if suffix in CAPTION_SUFFIXES:
        return CAPTION_FILE
    if allowed:
        return None if suffix in allowed else NOT_LISTED
    if suffix in VIDEO_SUFFIXES:
        return None
    return sniff(raw_dir / source)


def find_clips(raw_dir: Path, extensions: Iterable[str] = ()) -> tuple[list[str], list[Skipped]]:
    """The clips under ``raw_dir`` (sorted posix paths relative to it) and the skipped files.

    ``extensions`` (lower case, with dot) is an allow-list: when given, exactly the files
    with those extensions are clips and nothing is opened here; when empty, the rule in the
    module docstring applies.
    """
    allowed = frozenset(extensions)
    files, skipped = _walk(raw_dir)
    clips = []
    for source in files:
        reason = _classify(raw_dir, source, allowed)
        if reason is None:
            clips.append(source)
        else:
            skipped.append(Skipped(source, reason))
    return clips, sorted(skipped, key=lambda s: s.source)
