"""Range checks for every field: finite, bounded numbers, printable text, devices, paths
inside the project, and files that cannot be decoded."""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest

from aiprod_recipes.cli import main
from aiprod_recipes.spec import Spec, manifest_path
from aiprod_recipes.specio import InvalidSpec, decode_spec, load_spec


def _leaves(t: mi.Type, key: str) -> Iterator[tuple[str, mi.Type]]:
    """Every (dotted key, type) of the spec down to scalars, through lists and unions."""
    if isinstance(t, mi.Metadata):
        yield from _leaves(t.type, key)
    elif isinstance(t, mi.StructType):
        for f in t.fields:
            yield from _leaves(f.type, f"{key}.{f.encode_name}".lstrip("."))
    elif isinstance(t, mi.UnionType):
        for member in t.types:
            yield from _leaves(member, key)
    elif isinstance(t, mi.ListType | mi.TupleType | mi.VarTupleType):
        yield key, t
        items = t.item_types if isinstance(t, mi.TupleType) else (t.item_type,)
        for item in items:
            yield from _leaves(item, f"{key}[]")
    else:
        yield key, t


LEAVES = list(_leaves(mi.type_info(Spec), ""))


def test_every_number_is_bounded_and_every_text_has_a_pattern() -> None:
    """A float bounded on both sides is finite (NaN fails every comparison, inf the upper
    bound); an int has an upper bound; free text says which characters it allows; a list
    says how long it may be. A new field without them fails here."""
    unbounded = []
    for key, t in LEAVES:
        if isinstance(t, mi.FloatType):
            ok = (t.ge is not None or t.gt is not None) and (t.le is not None or t.lt is not None)
        elif isinstance(t, mi.IntType):
            ok = t.ge is not None and t.le is not None
        elif isinstance(t, mi.StrType):
            ok = t.pattern is not None
        elif isinstance(t, mi.ListType):
            ok = t.max_length is not None
        else:
            ok = isinstance(t, mi.BoolType | mi.LiteralType | mi.TupleType)
        if not ok:
            unbounded.append(f"{key}: {t}")
    assert not unbounded, "fields without range checks:\n" + "\n".join(unbounded)
    assert len(LEAVES) > 80


BAD_VALUES: dict[str, tuple[dict[str, Any], str, str]] = {
    "huge steps": ({"train": {"steps": 99999999999999999999}}, "train.steps", "<= 10000000"),
    "nan logit mean": ({"flow": {"logit_mean": float("nan")}}, "flow.logit_mean", "finite"),
    "inf cfg": ({"eval": {"cfg_scale": float("inf")}}, "eval.cfg_scale", "finite"),
    "-inf stg": ({"eval": {"stg_scale": float("-inf")}}, "eval.stg_scale", "finite"),
    "nan beta": ({"optim": {"betas": [0.9, float("nan")]}}, "optim.betas[1]", "finite"),
    "inf loss level": ({"eval": {"loss_levels": [float("inf")]}}, "eval.loss_levels[0]",
                       "finite"),
    "nan learning rate": ({"optim": {"learning_rate": float("nan")}}, "optim.learning_rate",
                          "finite"),
    "tpu": ({"model": {"device": "tpu:7"}}, "model.device", "cuda:N"),
    "cuda:x": ({"model": {"device": "cuda:x"}}, "model.device", "cuda:N"),
    "qwen device": ({"caption": {"backend": {"type": "qwen_omni", "model_dir": "m",
                                             "device": "gpu"}}}, "caption.backend.device",
                    "cuda:N"),
    "NUL trigger": ({"caption": {"trigger_word": "ai\x00prod"}}, "caption.trigger_word",
                    "printable"),
    "newline trigger": ({"caption": {"trigger_word": "ai\nprod"}}, "caption.trigger_word",
                        "one line"),
    "escape in prompt": ({"eval": {"prompts": ["a \x1b[31m red"]}}, "eval.prompts[0]",
                         "printable"),
    "NUL negative": ({"eval": {"negative_prompt": "\x00"}}, "eval.negative_prompt",
                     "printable"),
    "huge rank": ({"lora": {"rank": 100000}}, "lora.rank", "<= 1024"),
    "huge alpha": ({"lora": {"alpha": 1e30}}, "lora.alpha", "<="),
    "huge batch": ({"train": {"batch_size": 10**9}}, "train.batch_size", "<="),
    "huge bucket": ({"video": {"buckets": [{"width": 2**20, "height": 64, "frames": 9}]}},
                    "video.buckets[0].width", "<= 8192"),
    "huge duration": ({"ingest": {"max_duration_s": 1e12}}, "ingest.max_duration_s", "<="),
    "bad env name": ({"caption": {"backend": {"type": "gemini", "api_key_env": "MY KEY"}}},
                     "caption.backend.api_key_env", "environment variable"),
    "bad url": ({"caption": {"backend": {"type": "gemini", "base_url": "ftp://x"}}},
                "caption.backend.base_url", "http"),
    "upper-case extension": ({"data": {"extensions": [".MP4"]}}, "data.extensions[0]",
                             "lower case"),
    "odd target module": ({"lora": {"target_modules": ["to q"]}}, "lora.target_modules[0]",
                          "module name"),
    "raw dir outside": ({"data": {"raw_dir": "../clips"}}, "data.raw_dir", "inside the project"),
    "raw dir absolute": ({"data": {"raw_dir": "/srv/clips"}}, "data.raw_dir",
                         "inside the project"),
    "raw dir is the project": ({"data": {"raw_dir": "."}}, "data.raw_dir", "overlap"),
    "raw dir holds the outputs": ({"data": {"raw_dir": "data"}}, "data.raw_dir", "overlap"),
    "manifest outside": ({"caption": {"backend": {"type": "sidecar",
                                                  "manifest": "../../../outside/caps.csv"}}},
                         "caption.backend.manifest", "inside the project"),
    "manifest absolute": ({"caption": {"backend": {"type": "sidecar",
                                                   "manifest": "/tmp/caps.csv"}}},
                          "caption.backend.manifest", "inside the project"),
    "checkpoint up and out": ({"model": {"source": {"type": "checkpoint", "path": "../m.sft",
                                                    "gemma_dir": "/models/gemma"}}},
                              "model.source.path", "absolute path"),
    "gemma in an unexpanded home": ({"model": {"source": {"type": "checkpoint",
                                                          "path": "/m.sft",
                                                          "gemma_dir": "~/gemma"}}},
                                    "model.source.gemma_dir", "absolute path"),
    "qwen outside": ({"caption": {"backend": {"type": "qwen_omni", "model_dir": "../qwen"}}},
                     "caption.backend.model_dir", "absolute path"),
    "accelerate config outside": ({"train": {"accelerate_config": "/etc/ddp.yaml"}},
                                  "train.accelerate_config", "inside the project"),
    "adapter up and out": ({"lora": {"init_from": "../old/adapter.safetensors"}},
                           "lora.init_from", "absolute path"),
    "huge kept checkpoints": ({"train": {"keep_checkpoints": 10**9}}, "train.keep_checkpoints",
                              "<="),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_out_of_range_values_are_named(case: str) -> None:
    doc, key, phrase = BAD_VALUES[case]
    with pytest.raises(InvalidSpec) as info:
        decode_spec(doc)
    lines = [e for e in info.value.errors if e.startswith(f"{key}: ")]
    assert lines, info.value.errors
    assert phrase in lines[0], lines


def test_the_issue_cases_through_the_command(tmp_path: Path, capsys) -> None:
    """A NUL byte written as a TOML escape, and nan / inf literals, in one file."""
    path = tmp_path / "params.toml"
    path.write_text('[caption]\ntrigger_word = "ai\\u0000prod"\n[flow]\nlogit_mean = nan\n'
                    '[eval]\ncfg_scale = inf\n[model]\ndevice = "tpu:7"\n'
                    "[train]\nsteps = 99999999999999999999\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "5 error(s)" in err
    for key in ("caption.trigger_word", "flow.logit_mean", "eval.cfg_scale", "model.device",
                "train.steps"):
        assert f"{path}: {key}: " in err


ACCEPTED: dict[str, dict[str, Any]] = {
    "cuda:3": {"model": {"device": "cuda:3"}},
    "mps": {"model": {"device": "mps"}},
    "multi-line instruction": {"caption": {"instruction": "Describe:\n\t- what is seen\n"}},
    "unicode trigger": {"caption": {"trigger_word": "café ✓"}},
    "absolute checkpoint": {"model": {"source": {"type": "checkpoint",
                                                 "path": "/models/ltx-2.safetensors",
                                                 "gemma_dir": "/models/gemma"}}},
    "manifest beside the clips": {"data": {"raw_dir": "data/raw"},
                                  "caption": {"backend": {"type": "sidecar",
                                                          "manifest": "../captions.csv"}}},
    "raw dir with a dot": {"data": {"raw_dir": "./data/raw/"}},
    "gemini proxy": {"caption": {"backend": {"type": "gemini",
                                             "base_url": "http://127.0.0.1:8080"}}},
    "adapter from the hub": {"lora": {"init_from": "alice/ltx2-style@v1"}},
    "absolute adapter": {"lora": {"init_from": "/adapters/style.safetensors"}},
}


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_sensible_values_still_pass(case: str) -> None:
    decode_spec(ACCEPTED[case])


def test_manifest_path_is_project_relative() -> None:
    spec = decode_spec(ACCEPTED["manifest beside the clips"])
    assert manifest_path(spec) == "data/captions.csv"
    assert manifest_path(decode_spec({})) is None


UNDECODABLE: dict[str, tuple[bytes, str]] = {
    "utf-16 with a mark": ("[lora]\nrank = 8\n".encode("utf-16"), "UTF-16"),
    "utf-16 without a mark": ("[lora]\nrank = 8\n".encode("utf-16-le"), "UTF-16"),
    "utf-32": ("[lora]\nrank = 8\n".encode("utf-32"), "UTF-32"),
    "latin-1": ("[caption]\ntrigger_word = \"caf\xe9\"\n".encode("latin-1"),
                "byte 0xe9 at line 2, column 20"),
    "random bytes": (bytes(range(128, 256)), "not UTF-8"),
}


@pytest.mark.parametrize("case", sorted(UNDECODABLE))
def test_undecodable_files_are_named_without_a_traceback(case: str, tmp_path: Path,
                                                         capsys) -> None:
    raw, phrase = UNDECODABLE[case]
    path = tmp_path / "params.toml"
    path.write_bytes(raw)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: not UTF-8 text" in err and phrase in err
    assert "Traceback" not in err


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "params.toml"
    path.write_bytes(codecs.BOM_UTF8 + b"[lora]\nrank = 4\n")
    assert load_spec(path).lora.rank == 4


def test_a_folder_is_not_a_spec(tmp_path: Path, capsys) -> None:
    assert main(["validate", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_defaults_are_within_their_own_ranges() -> None:
    spec = decode_spec({})
    assert msgspec.convert(msgspec.to_builtins(spec), Spec) == spec
