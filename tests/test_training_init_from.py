"""lora.init_from without a model: a path, a Hub id read from a local cache only, clear
errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aiprod_recipes.names import ADAPTER_FILE
from aiprod_recipes.registry import data_deps, get_stage
from aiprod_recipes.spec import Lora
from aiprod_recipes.specio import InvalidSpec, decode_spec
from aiprod_recipes.training.init_from import InitFromError, check_shape, resolve
from aiprod_recipes.training.lora import AdapterMeta, safetensors_bytes

META = AdapterMeta(rank=4, alpha=4.0, target_modules=("to_q", "to_v"), strategy="text_to_video",
                   base_fingerprint="ab" * 32, spec_hash="x")


def adapter_bytes() -> bytes:
    return safetensors_bytes({"diffusion_model.b.to_q.lora_A.weight": torch.zeros(4, 8)},
                             META.header())


def test_a_path(tmp_path: Path) -> None:
    path = tmp_path / "a.safetensors"
    path.write_bytes(adapter_bytes())
    assert resolve(str(path)) == path
    with pytest.raises(InitFromError, match=r"lora.init_from: .*no such file"):
        resolve(str(tmp_path / "b.safetensors"))


def test_a_hub_id_from_the_local_cache_only(tmp_path: Path) -> None:
    pytest.importorskip("huggingface_hub")
    repo = tmp_path / "models--alice--style"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / ADAPTER_FILE).write_bytes(adapter_bytes())
    assert resolve("alice/style", cache_dir=tmp_path) == snapshot / ADAPTER_FILE
    assert resolve(f"alice/style@{commit}", cache_dir=tmp_path) == snapshot / ADAPTER_FILE
    with pytest.raises(InitFromError, match="huggingface-cli download bob/other adapter"):
        resolve("bob/other", cache_dir=tmp_path)


def test_rank_and_targets_must_match() -> None:
    check_shape(META, Lora(rank=4, alpha=8.0, target_modules=["to_q", "to_v"]), Path("a"))
    with pytest.raises(InitFromError, match=r"lora.rank = 8 but a has rank 4"):
        check_shape(META, Lora(rank=8, target_modules=["to_q", "to_v"]), Path("a"))
    with pytest.raises(InitFromError, match=r"lora.target_modules = \['to_q'\]"):
        check_shape(META, Lora(rank=4, target_modules=["to_q"]), Path("a"))


def test_spec_rules() -> None:
    for bad in ("style", "data/stages/train/adapter.safetensors"):
        with pytest.raises(InvalidSpec, match=r"lora\.init_from"):
            decode_spec({"lora": {"init_from": bad}})
    with pytest.raises(InvalidSpec, match=r'needs train\.mode = "lora"'):
        decode_spec({"lora": {"init_from": "a/b"}, "train": {"mode": "full"}})


def test_a_file_is_a_dependency_of_train_and_a_hub_id_is_not() -> None:
    spec = decode_spec({"lora": {"init_from": "adapters/start.safetensors"}})
    assert "adapters/start.safetensors" in data_deps(get_stage("train", spec), spec)
    spec = decode_spec({"lora": {"init_from": "alice/style"}})
    assert not any("alice" in d for d in data_deps(get_stage("train", spec), spec))
