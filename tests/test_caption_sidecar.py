"""Sidecar captions: per-clip files and every manifest format, plus clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aiprod_recipes.captioning.sidecar import CaptionFileError, load_sidecar_captions

SOURCES = ["a.mp4", "sub/b.mov", "sub/c.mp4"]


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    (tmp_path / "sub").mkdir()
    for source in SOURCES:
        (tmp_path / source).write_bytes(b"\x00")
    return tmp_path


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def test_per_clip_txt_json_and_full_name_txt(raw: Path) -> None:
    _write(raw / "a.txt", "\ufeff  A red kite over a hill.\n")
    _write(raw / "sub" / "b.json", json.dumps({"text": "A boat at dawn."}))
    _write(raw / "sub" / "c.mp4.txt", "A cat sleeps.")
    _write(raw / "sub" / "c.txt", "ignored: the full-name sidecar wins")
    assert load_sidecar_captions(raw, SOURCES) == {
        "a.mp4": "A red kite over a hill.",
        "sub/b.mov": "A boat at dawn.",
        "sub/c.mp4": "A cat sleeps.",
    }


@pytest.mark.parametrize("key", ["caption", "text", "prompt", "Caption"])
def test_per_clip_json_keys(raw: Path, key: str) -> None:
    _write(raw / "a.json", json.dumps({key: "A kite.", "other": 1}))
    assert load_sidecar_captions(raw, ["a.mp4"]) == {"a.mp4": "A kite."}


def test_missing_and_empty_captions_are_absent(raw: Path) -> None:
    _write(raw / "a.txt", "   \n")
    assert load_sidecar_captions(raw, SOURCES) == {}


def test_per_clip_json_errors_name_the_file(raw: Path) -> None:
    _write(raw / "a.json", '{"caption": "x",\n  oops}')
    with pytest.raises(CaptionFileError, match=r"a\.json: line 2"):
        load_sidecar_captions(raw, ["a.mp4"])
    _write(raw / "a.json", json.dumps({"title": "no caption"}))
    with pytest.raises(CaptionFileError, match=r"a\.json"):
        load_sidecar_captions(raw, ["a.mp4"])


def test_manifest_json_mapping(raw: Path) -> None:
    _write(raw / "captions.json", json.dumps({
        "a.mp4": "A kite.", "./sub/b.mov": "A boat.", "sub\\c.mp4": {"caption": "A cat."},
    }))
    assert load_sidecar_captions(raw, SOURCES, "captions.json") == {
        "a.mp4": "A kite.", "sub/b.mov": "A boat.", "sub/c.mp4": "A cat.",
    }


def test_manifest_json_list(raw: Path) -> None:
    _write(raw / "captions.json", json.dumps([
        {"file": "a.mp4", "caption": "A kite."},
        {"path": "sub/b.mov", "text": "A boat."},
        {"media_path": str(raw / "sub" / "c.mp4"), "prompt": "A cat."},
    ]))
    assert load_sidecar_captions(raw, SOURCES, "captions.json") == {
        "a.mp4": "A kite.", "sub/b.mov": "A boat.", "sub/c.mp4": "A cat.",
    }


def test_manifest_jsonl_with_blank_lines(raw: Path) -> None:
    _write(raw / "captions.jsonl", '{"file": "a.mp4", "caption": "A kite."}\n\n'
                                   '{"media_path": "sub/c.mp4", "text": "A cat."}\n')
    assert load_sidecar_captions(raw, SOURCES, "captions.jsonl") == {
        "a.mp4": "A kite.", "sub/c.mp4": "A cat.",
    }


def test_manifest_csv_and_tsv(raw: Path) -> None:
    _write(raw / "captions.csv", 'id,Path,Caption\n1,a.mp4,"A kite, high up."\n'
                                 '2,sub/b.mov,"A boat ""Mary"" at dawn."\n')
    assert load_sidecar_captions(raw, SOURCES, "captions.csv") == {
        "a.mp4": "A kite, high up.", "sub/b.mov": 'A boat "Mary" at dawn.',
    }
    _write(raw / "captions.tsv", "media_path\ttext\nsub/c.mp4\tA cat.\n")
    assert load_sidecar_captions(raw, SOURCES, "captions.tsv") == {"sub/c.mp4": "A cat."}


def test_manifest_bare_names_match_unique_clips_only(tmp_path: Path) -> None:
    sources = ["x/one.mp4", "y/one.mp4", "y/two.mp4"]
    _write(tmp_path / "m.json", json.dumps({"one.mp4": "Ambiguous.", "two.mp4": "Two."}))
    assert load_sidecar_captions(tmp_path, sources, "m.json") == {"y/two.mp4": "Two."}


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        ("m.jsonl", '{"file": "a.mp4", "caption": "ok"}\n{"file": "b.mp4" "caption": 1}\n',
         r"m\.jsonl: line 2: not valid JSON"),
        ("m.jsonl", '{"file": "a.mp4", "caption": "ok"}\n\n{"caption": "no path"}\n',
         r"m\.jsonl: line 3: no clip path"),
        ("m.jsonl", '{"file": "a.mp4"}\n', r"m\.jsonl: line 1: no caption"),
        ("m.jsonl", '["a.mp4", "x"]\n', r"m\.jsonl: line 1: expected an object"),
        ("m.jsonl", '{"file": "a.mp4", "caption": 3}\n', r"line 1: caption must be a string"),
        ("m.json", '[{"file": "a.mp4", "caption": "ok"},\n {"file": "b.mp4"]',
         r"m\.json: line 2: not valid JSON"),
        ("m.json", '[{"file": "a.mp4", "caption": "ok"}, {"file": "b.mp4"}]',
         r"m\.json: entry 1: no caption"),
        ("m.json", '"just a string"', r"m\.json: expected an object"),
        ("m.csv", "name,caption\na.mp4,x\n", r"m\.csv: line 1: header .* path column"),
        ("m.csv", "file,caption\na.mp4,x\nb.mp4,y,z\n", r"m\.csv: line 3: 3 fields"),
        ("m.csv", "", r"m\.csv: line 1: empty file"),
        ("m.csv", "file,caption\na.mp4,one\n./a.mp4,two\n",
         r"m\.csv: line 3: './a.mp4' already has a different caption at line 2"),
        ("m.yaml", "a.mp4: x\n", r"unsupported manifest type"),
    ],
)
def test_malformed_manifest_errors(raw: Path, name: str, content: str, pattern: str) -> None:
    _write(raw / name, content)
    with pytest.raises(CaptionFileError, match=pattern):
        load_sidecar_captions(raw, SOURCES, name)


def test_missing_manifest_is_an_error(raw: Path) -> None:
    with pytest.raises(CaptionFileError, match="not found"):
        load_sidecar_captions(raw, SOURCES, "nope.json")
