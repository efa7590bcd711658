"""Items shared among processes: each computes its share into a part, the main one merges
into exactly the bytes one process writes.

The "processes" here are threads around a real barrier, running the same writer code each
accelerate worker runs (tests/test_stage_sharded.py runs real accelerate processes).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from aiprod_recipes.names import PARTS_DIR
from aiprod_recipes.store.parts import Share, gather_json, shard_writer
from aiprod_recipes.store.shards import ShardReader, item_key


def _tensors(value: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(value)
    return {"x": torch.randn(3, 4, generator=g).bfloat16(), "n": torch.tensor([value])}


def _keyed(items: dict[str, int]) -> list[tuple[str, str]]:
    return sorted((item_key(item=name, value=v), name) for name, v in items.items())


def _write(out: Path, previous: Path | None, items: dict[str, int], share: Share,
           computed_here: list[str]) -> Any:
    with shard_writer(out, previous, share) as w:
        for key, name in w.to_compute(_keyed(items), "test"):
            computed_here.append(name)
            w.add(key, name, _tensors(items[name]), {"value": items[name]})
    return w


def _in_threads(count: int, work: Callable[[Share], Any]) -> list[Any]:
    """Run ``work`` as ``count`` ranks sharing one barrier; their results in rank order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def target(rank: int) -> None:
        try:
            results[rank] = work(Share(rank=rank, count=count, wait=barrier.wait))
        except BaseException as e:  # re-raised in the test's thread
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=target, args=(r,)) for r in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_three_processes_write_the_one_process_bytes(tmp_path: Path) -> None:
    items = {f"clip{i:02d}": i for i in range(40)}
    old = {name: v for name, v in items.items() if v % 8 < 5}
    _write(tmp_path / "previous", None, old, Share(), [])
    one = _write(tmp_path / "one", tmp_path / "previous", items, Share(), [])
    assert (one.computed, one.reused) == (15, 25)

    computed: list[list[str]] = [[], [], []]
    writers = _in_threads(3, lambda share: _write(
        tmp_path / "three", tmp_path / "previous", items, share, computed[share.rank]))

    assert (writers[0].computed, writers[0].reused) == (15, 25)
    assert sorted(n for names in computed for n in names) == sorted(set(items) - set(old))
    assert all(len(names) == 5 for names in computed)
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "three").iterdir())
    assert PARTS_DIR not in names
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "three" / name).read_bytes()
    assert ShardReader(tmp_path / "three").by_item["clip07"]["value"] == 7


def test_more_processes_than_items(tmp_path: Path) -> None:
    items = {"a": 1, "b": 2}
    _write(tmp_path / "one", None, items, Share(), [])
    _in_threads(4, lambda share: _write(tmp_path / "four", None, items, share, []))
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "four").iterdir())
    assert PARTS_DIR not in names
    for path in (tmp_path / "one").iterdir():
        assert path.read_bytes() == (tmp_path / "four" / path.name).read_bytes()


def test_gather_json_hands_every_value_to_the_main_process(tmp_path: Path) -> None:
    got = _in_threads(3, lambda share: gather_json(share, tmp_path, {"rank": share.rank}))
    assert got == [[{"rank": 0}, {"rank": 1}, {"rank": 2}], None, None]
    assert gather_json(Share(), tmp_path / "alone", [1]) == [[1]]
    assert not (tmp_path / "alone").exists()


def test_shares_are_disjoint_and_cover_everything() -> None:
    todo = list(range(11))
    shares = [Share(rank=r, count=3).mine(todo) for r in range(3)]
    assert sorted(i for s in shares for i in s) == todo
    assert [len(s) for s in shares] == [4, 4, 3]
