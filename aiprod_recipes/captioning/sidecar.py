"""Captions the user already has: per-clip sidecar files or one manifest file.

People arrive with captions in whatever shape their last tool wrote: a `.txt` next to each
clip, a `.json` per clip, or one table for the whole folder (JSON map, JSON list, JSONL,
CSV). All of them are read into one mapping, keyed by the clip's path relative to the raw
folder (posix), so the caption stage never cares where a caption came from.

A clip without a caption is simply absent from the result: whether that stops the stage or
drops the clip is the caller's `on_missing` decision. A caption file that exists but cannot
be read is always an error, naming the file (and line), because silently skipping it would
turn a typo into a dataset without captions.
"""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

CAPTION_KEYS = ("caption", "text", "prompt")
PATH_KEYS = ("file", "path", "media_path", "video", "clip")


class CaptionFileError(ValueError):
    """A caption sidecar or manifest is malformed; the message names the file and line."""


class SidecarBackend:
    """Captions from files the user wrote (``caption.backend.type = "sidecar"``)."""

    reproducible = True

    def __init__(self, caption: Any, *, raw_dir: Path, sources: list[str], **_: Any) -> None:
        self.texts = load_sidecar_captions(raw_dir, sorted(set(sources)),
                                           caption.backend.manifest)

    def key_part(self, source: str) -> str | None:
        return self.texts.get(source)

    def caption(self, item: str, source: str, clip: Any) -> str | None:
        return self.texts.get(source)

    def is_fatal(self, error: Exception) -> bool:
        return True


def load_sidecar_captions(raw_dir: Path, sources: list[str], manifest: str = "") -> dict[str, str]:
    """Map each source clip (posix path relative to raw_dir) to its caption.

    With `manifest` (relative to raw_dir) the captions come from that one file; otherwise
    from sidecars next to each clip. Clips without a caption are absent from the result.
    """
    raw_dir = Path(raw_dir)
    if manifest:
        table = read_manifest(raw_dir / manifest, raw_dir)
        return match_manifest(table, sources)
    found: dict[str, str] = {}
    for source in sources:
        caption = read_clip_sidecar(raw_dir, source)
        if caption is not None:
            found[source] = caption
    return found


# --------------------------------------------------------------------------- per clip

def sidecar_candidates(raw_dir: Path, source: str) -> list[Path]:
    """Sidecar files for one clip, most specific first: clip.mp4.txt, clip.txt, clip.json."""
    clip = raw_dir / source
    return [
        clip.with_name(clip.name + ".txt"),
        clip.with_suffix(".txt"),
        clip.with_suffix(".json"),
        clip.with_name(clip.name + ".json"),
    ]


def read_clip_sidecar(raw_dir: Path, source: str) -> str | None:
    """The caption of one clip from the first sidecar that exists; None when none does."""
    for path in sidecar_candidates(raw_dir, source):
        if not path.is_file():
            continue
        if path.suffix == ".txt":
            text = path.read_text(encoding="utf-8-sig").strip()
        else:
            text = _caption_from_json_file(path)
        return text or None
    return None


def _caption_from_json_file(path: Path) -> str:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise CaptionFileError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if isinstance(data, str):
        return data.strip()
    if isinstance(data, dict):
        caption = _pick(data, CAPTION_KEYS)
        if caption is not None:
            return _as_caption(caption, f"{path}")
    raise CaptionFileError(f"{path}: expected a string or an object with one of "
                           f"{', '.join(CAPTION_KEYS)}")


# --------------------------------------------------------------------------- manifest

def read_manifest(path: Path, raw_dir: Path | None = None) -> dict[str, str]:
    """Read one manifest into {clip path: caption}; keys are normalised posix paths.

    Absolute paths inside raw_dir are made relative to it. The same clip listed twice with
    different captions is an error: one of the two would be silently lost.
    """
    if not path.is_file():
        raise CaptionFileError(f"{path}: caption manifest not found")
    suffix = path.suffix.lower()
    readers = {".json": _json_rows, ".jsonl": _jsonl_rows, ".csv": _csv_rows, ".tsv": _csv_rows}
    if suffix not in readers:
        raise CaptionFileError(f"{path}: unsupported manifest type {suffix!r} "
                               "(use .json, .jsonl, .csv or .tsv)")
    table: dict[str, str] = {}
    where: dict[str, str] = {}
    for location, clip, caption in readers[suffix](path):
        key = normalise_clip_path(clip, raw_dir)
        if key in table and table[key] != caption:
            raise CaptionFileError(f"{path}: {location}: {clip!r} already has a different "
                                   f"caption at {where[key]}")
        table[key] = caption
        where[key] = location
    return table


def match_manifest(table: dict[str, str], sources: Iterable[str]) -> dict[str, str]:
    """Look each source up by its relative path, else by its file name when that is unique.

    Manifests written by other tools often list bare file names while clips sit in
    sub-folders; a bare name that fits more than one clip is not guessed.
    """
    sources = list(sources)
    by_name: dict[str, list[str]] = {}
    for source in sources:
        by_name.setdefault(PurePosixPath(source).name, []).append(source)
    found: dict[str, str] = {}
    for source in sources:
        key = normalise_clip_path(source)
        name = PurePosixPath(key).name
        if key in table:
            found[source] = table[key]
        elif name in table and len(by_name[name]) == 1:
            found[source] = table[name]
    return {k: v for k, v in found.items() if v}


def normalise_clip_path(clip: str, raw_dir: Path | None = None) -> str:
    """Posix, no leading './', relative to raw_dir when it is an absolute path inside it."""
    text = clip.strip().replace("\\", "/")
    path = Path(text)
    if raw_dir is not None and path.is_absolute():
        with contextlib.suppress(ValueError):  # outside raw_dir: kept as written
            text = path.resolve().relative_to(Path(raw_dir).resolve()).as_posix()
    while text.startswith("./"):
        text = text[2:]
    return PurePosixPath(text).as_posix() if text else text


def _json_rows(path: Path) -> Iterator[tuple[str, str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise CaptionFileError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if isinstance(data, dict):
        for clip, value in data.items():
            location = f"key {clip!r}"
            caption = _pick(value, CAPTION_KEYS) if isinstance(value, dict) else value
            yield location, clip, _as_caption(caption, f"{path}: {location}")
    elif isinstance(data, list):
        for index, entry in enumerate(data):
            yield _row_from_object(entry, path, f"entry {index}")
    else:
        raise CaptionFileError(f"{path}: expected an object {{clip: caption}} or a list of "
                               f"objects, got {type(data).__name__}")


def _jsonl_rows(path: Path) -> Iterator[tuple[str, str, str]]:
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CaptionFileError(f"{path}: line {number}: not valid JSON "
                                       f"({exc.msg})") from None
            yield _row_from_object(entry, path, f"line {number}")


def _csv_rows(path: Path) -> Iterator[tuple[str, str, str]]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            raise CaptionFileError(f"{path}: line 1: empty file, expected a header row")
        columns = [name.strip().lower() for name in header]
        path_col = _column(columns, PATH_KEYS)
        caption_col = _column(columns, CAPTION_KEYS)
        if path_col is None or caption_col is None:
            raise CaptionFileError(
                f"{path}: line 1: header {header} needs a path column "
                f"({'/'.join(PATH_KEYS)}) and a caption column ({'/'.join(CAPTION_KEYS)})")
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            location = f"line {reader.line_num}"
            if len(row) != len(columns):
                raise CaptionFileError(f"{path}: {location}: {len(row)} fields, the header "
                                       f"has {len(columns)}")
            clip = row[path_col].strip()
            if not clip:
                raise CaptionFileError(f"{path}: {location}: empty path")
            yield location, clip, row[caption_col].strip()


def _row_from_object(entry: Any, path: Path, location: str) -> tuple[str, str, str]:
    if not isinstance(entry, dict):
        raise CaptionFileError(f"{path}: {location}: expected an object, "
                               f"got {type(entry).__name__}")
    clip = _pick(entry, PATH_KEYS)
    if not isinstance(clip, str) or not clip.strip():
        raise CaptionFileError(f"{path}: {location}: no clip path "
                               f"(one of {', '.join(PATH_KEYS)})")
    caption = _pick(entry, CAPTION_KEYS)
    if caption is None:
        raise CaptionFileError(f"{path}: {location}: no caption "
                               f"(one of {', '.join(CAPTION_KEYS)})")
    return location, clip, _as_caption(caption, f"{path}: {location}")


def _pick(obj: dict[str, Any], keys: tuple[str, ...]) -> Any:
    lowered = {str(k).lower(): v for k, v in obj.items()}
    for key in keys:
        if key in lowered:
            return lowered[key]
    return None


def _column(columns: list[str], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        if key in columns:
            return columns.index(key)
    return None


def _as_caption(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise CaptionFileError(f"{where}: caption must be a string, got {type(value).__name__}")
    return value.strip()
