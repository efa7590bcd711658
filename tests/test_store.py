"""Shards and manifests: prefix sharding, reuse by key, byte-identical output."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aiprod_recipes.names import MANIFEST_FILE
from aiprod_recipes.store.shards import (
    ShardReader,
    ShardWriter,
    item_key,
    open_previous,
    shard_name,
)


def _write(folder: Path, items: dict[str, int], previous: Path | None = None) -> ShardWriter:
    keyed = sorted((item_key(item=name, value=v), name, v) for name, v in items.items())
    with ShardWriter(folder, open_previous(previous)) as w:
        for key, name, v in keyed:
            if w.can_reuse(key):
                w.reuse(key, name)
            else:
                g = torch.Generator().manual_seed(v)
                w.add(key, name, {"x": torch.randn(3, 4, generator=g).bfloat16(),
                                  "n": torch.tensor([v])}, {"value": v})
    return w


def test_round_trip_and_reuse(tmp_path: Path) -> None:
    items = {f"clip{i}": i for i in range(20)}
    _write(tmp_path / "a", items)
    reader = ShardReader(tmp_path / "a")
    assert len(reader) == 20
    assert reader.item_tensors("clip7")["n"].item() == 7
    assert reader.by_item["clip7"]["value"] == 7
    w = _write(tmp_path / "b", {**items, "new": 99}, previous=tmp_path / "a")
    assert (w.computed, w.reused) == (1, 20)
    b = ShardReader(tmp_path / "b")
    assert torch.equal(b.item_tensors("clip3")["x"], reader.item_tensors("clip3")["x"])


def test_identical_inputs_give_identical_bytes(tmp_path: Path) -> None:
    items = {f"clip{i}": i for i in range(10)}
    _write(tmp_path / "a", items)
    _write(tmp_path / "b", items)
    _write(tmp_path / "c", items, previous=tmp_path / "a")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert MANIFEST_FILE in names
    for name in names:
        data = (tmp_path / "a" / name).read_bytes()
        assert data == (tmp_path / "b" / name).read_bytes() == (tmp_path / "c" / name).read_bytes()


def test_adding_an_item_rewrites_one_shard(tmp_path: Path) -> None:
    items = {f"clip{i}": i for i in range(30)}
    _write(tmp_path / "a", items)
    _write(tmp_path / "b", {**items, "extra": 1000}, previous=tmp_path / "a")
    a = {p.name: p.read_bytes() for p in (tmp_path / "a").glob("shard-*")}
    b = {p.name: p.read_bytes() for p in (tmp_path / "b").glob("shard-*")}
    assert sum(a.get(name) != data for name, data in b.items()) == 1


def test_keys_must_be_ordered(tmp_path: Path) -> None:
    w = ShardWriter(tmp_path)
    w.add("bb", "x", {"t": torch.zeros(1)})
    with pytest.raises(ValueError, match="increasing key order"):
        w.add("aa", "y", {"t": torch.zeros(1)})


def test_a_shard_shared_with_reused_items_is_written_as_from_scratch(tmp_path: Path) -> None:
    items = {f"clip{i}": i for i in range(40)}
    keys = {name: item_key(item=name, value=v) for name, v in items.items()}
    shards = [shard_name(k) for k in keys.values()]
    left_out = next(n for n, k in keys.items() if shards.count(shard_name(k)) > 1)
    _write(tmp_path / "scratch", items)
    _write(tmp_path / "before", {n: v for n, v in items.items() if n != left_out})
    w = _write(tmp_path / "after", items, previous=tmp_path / "before")
    assert (w.computed, w.reused) == (1, 39)
    names = sorted(p.name for p in (tmp_path / "scratch").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "after").iterdir())
    for name in names:
        scratch, after = (tmp_path / d / name for d in ("scratch", "after"))
        assert scratch.read_bytes() == after.read_bytes()


REUSE_EVERYTHING = """
import sys
from pathlib import Path
from aiprod_recipes.store.shards import ShardReader, ShardWriter, open_previous
previous = open_previous(Path(sys.argv[1]))
with ShardWriter(Path(sys.argv[2]), previous) as w:
    for row in sorted(previous.rows, key=lambda r: r["key"]):
        w.reuse(row["key"], row["item"])
print("torch" in sys.modules)
"""


def test_reusing_every_item_loads_no_tensor(tmp_path: Path) -> None:
    """Whole shards are copied: a stage with nothing to compute does not even import torch."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    _write(tmp_path / "a", {f"clip{i}": i for i in range(30)})
    proc = subprocess.run([sys.executable, "-c", REUSE_EVERYTHING, str(tmp_path / "a"),
                           str(tmp_path / "b")], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.strip() == "False"
    for path in (tmp_path / "a").iterdir():
        assert path.read_bytes() == (tmp_path / "b" / path.name).read_bytes()


def test_numpy_arrays_store_the_bytes_torch_tensors_do(tmp_path: Path) -> None:
    import numpy as np

    items = {f"clip{i}": bytes(range(i, i + 50)) for i in range(12)}
    keyed = sorted((item_key(item=name), name) for name in items)
    for folder, wrap in (("torch", lambda b: torch.frombuffer(bytearray(b), dtype=torch.uint8)),
                         ("numpy", lambda b: np.frombuffer(b, dtype=np.uint8))):
        with ShardWriter(tmp_path / folder) as w:
            for key, name in keyed:
                w.add(key, name, {"mp4": wrap(items[name])})
    with ShardWriter(tmp_path / "mixed", open_previous(tmp_path / "torch")) as w:
        for key, name in keyed:
            if name == "clip3":
                w.add(key, name, {"mp4": np.frombuffer(items[name], dtype=np.uint8)})
            else:
                w.reuse(key, name)
    for path in (tmp_path / "torch").iterdir():
        assert path.read_bytes() == (tmp_path / "numpy" / path.name).read_bytes()
        assert path.read_bytes() == (tmp_path / "mixed" / path.name).read_bytes()
    assert ShardReader(tmp_path / "numpy").item_bytes("clip5", "mp4") == items["clip5"]
