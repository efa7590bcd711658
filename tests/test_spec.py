"""The spec: strict decoding, every error named by file and dotted key, the JSON Schema."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from aiprod_recipes.cli import main
from aiprod_recipes.spec import Spec
from aiprod_recipes.specio import InvalidSpec, decode_spec, json_schema, load_spec

BAD_CASES = {
    "unknown key": ("[lora]\nrank = 8\nranq = 4\n", "lora.ranq"),
    "wrong type": ('[lora]\nrank = "eight"\n', "lora.rank"),
    "frames 48": ("[[video.buckets]]\nwidth = 64\nheight = 64\nframes = 48\n",
                  "video.buckets[0].frames"),
    "width 500": ("[[video.buckets]]\nwidth = 500\nheight = 64\nframes = 9\n",
                  "video.buckets[0].width"),
    "rank 0": ("[lora]\nrank = 0\n", "lora.rank"),
    "negative lr": ("[optim]\nlearning_rate = -1e-4\n", "optim.learning_rate"),
    "unknown section": ("[lorra]\nrank = 8\n", "lorra"),
    "bad tag": ('[strategy]\ntype = "text_to_image"\n', "strategy.type"),
    "ic-lora needs references": ('[strategy]\ntype = "video_to_video"\n', "reference.enabled"),
    "ic-lora needs lora mode": (
        '[strategy]\ntype = "video_to_video"\n[reference]\nenabled = true\n'
        '[train]\nmode = "full"\n', "train.mode"),
    "max tokens": ("[text_encoder]\nmax_tokens = 200\n", "text_encoder.max_tokens"),
    "alpha 0": ("[lora]\nalpha = 0.0\n", "lora.alpha"),
    "negative block swap": ("[memory]\nblocks_to_swap = -1\n", "memory.blocks_to_swap"),
    "missing checkpoint path": ('[model]\nsource = { type = "checkpoint", gemma_dir = "g" }\n',
                                "model.source"),
    "not toml": ("[lora\n", "not valid TOML"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_spec_exits_2_naming_the_key(case: str, tmp_path: Path, capsys) -> None:
    text, key = BAD_CASES[case]
    path = tmp_path / "params.toml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert key in err
    assert str(path) in err


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "params.toml"
    path.write_text("[lora]\nrank = 0\nbogus = 1\n[optim]\nlearning_rate = 2.0\n"
                    "[[video.buckets]]\nwidth = 500\nheight = 64\nframes = 48\n")
    with pytest.raises(InvalidSpec) as info:
        load_spec(path)
    text = "\n".join(info.value.errors)
    for key in ("lora.rank", "lora.bogus", "video.buckets[0].width", "video.buckets[0].frames"):
        assert key in text


def test_error_says_what_is_allowed(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpec) as info:
        decode_spec({"lora": {"rank": 0}})
    assert info.value.errors == ["lora.rank: expected `int` >= 1 (got 0)"]
    with pytest.raises(InvalidSpec) as info:
        decode_spec({"video": {"buckets": [{"width": 64, "height": 64, "frames": 48}]}})
    assert "8k + 1" in info.value.errors[0]


def test_defaults_decode_and_round_trip() -> None:
    spec = decode_spec({})
    again = msgspec.convert(msgspec.to_builtins(spec), Spec)
    assert again == spec


def test_missing_file_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["validate", str(tmp_path / "nope.toml")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_schema_has_descriptions(capsys) -> None:
    schema = json_schema()
    lora = schema["$defs"]["Lora"]["properties"]["rank"]
    assert lora["minimum"] == 1 and "rank" in lora["description"].lower()
    assert main(["schema"]) == 0
    assert '"Optim"' in capsys.readouterr().out


def test_a_wrong_type_tag_lists_the_types() -> None:
    with pytest.raises(InvalidSpec) as info:
        decode_spec({"caption": {"backend": {"type": "gpt"}}})
    assert "allowed types: 'sidecar', 'qwen_omni', 'gemini'" in info.value.errors[0]
