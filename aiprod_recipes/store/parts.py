"""Per-item work shared among several processes, merged into what one process writes.

Under ``accelerate launch`` a per-item stage runs in every process. All processes list the
same items in the same order (sorted keys) and skip the same reusable ones, so each can take
its share without talking to the others: every ``count``-th item to compute, from its rank.
Each process writes its items into its own part folder under the stage's temporary output;
after a barrier the main process merges the parts, in key order, with the items reused from
the previous output, through the same ``ShardWriter`` one process uses. The merged output
is therefore byte-identical to the one-process output whatever the process count, which is
what keeps the count a runtime choice rather than a param.

Nothing here starts processes or talks to accelerate: ``Share`` carries the rank, the count
and the barrier, given by the worker that accelerate started (``aiprod_recipes.worker``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiprod_recipes.names import PARTS_DIR
from aiprod_recipes.store.shards import ShardReader, ShardWriter, open_previous

T = TypeVar("T")
_VALUE_FILE = "value.json"


def _alone() -> None:
    """The barrier of a single process: nothing to wait for."""


@dataclass(frozen=True)
class Share:
    """This process's place among the processes that run one stage together."""

    rank: int = 0
    count: int = 1
    wait: Callable[[], None] = field(default=_alone, compare=False, repr=False)
    """Blocks until every process has called it (accelerate's ``wait_for_everyone``)."""

    @property
    def main(self) -> bool:
        """The process that merges the parts and writes the output."""
        return self.rank == 0

    def mine(self, todo: Sequence[T]) -> list[T]:
        """This process's items of ``todo``: every ``count``-th, from ``rank`` (an even
        spread when items of one kind, long clips say, sit together in key order)."""
        return list(todo[self.rank::self.count])


def part_dir(out: Path, rank: int) -> Path:
    """Where process ``rank`` writes its items, inside the stage's temporary output."""
    return out / PARTS_DIR / f"rank-{rank:05d}"


def gather_json(share: Share, out: Path, value: Any) -> list[Any] | None:
    """Every process's ``value`` (JSON), in rank order, on the main process; None elsewhere.

    The values travel through the part folders; the caller removes them with
    ``remove_parts`` once merged.
    """
    if share.count == 1:
        return [value]
    part = part_dir(out, share.rank)
    part.mkdir(parents=True, exist_ok=True)
    (part / _VALUE_FILE).write_text(json.dumps(value), encoding="utf-8")
    share.wait()
    if not share.main:
        return None
    return [json.loads((part_dir(out, r) / _VALUE_FILE).read_text(encoding="utf-8"))
            for r in range(share.count)]


def remove_parts(out: Path) -> None:
    shutil.rmtree(out / PARTS_DIR, ignore_errors=True)


class SharedShardWriter(ShardWriter):
    """A ``ShardWriter`` for one of several processes.

    ``to_compute`` yields only this process's share of the items that cannot be reused, and
    ``add`` stores them in its part. ``close`` waits for every process; the main one then
    writes the output from the previous output's items and every part, in key order.
    """

    def __init__(self, folder: Path, previous: ShardReader | None, share: Share) -> None:
        super().__init__(folder, previous)
        self.share = share
        self._part = ShardWriter(part_dir(folder, share.rank))
        self._keyed: list[tuple[str, str]] = []

    def to_compute(self, keyed: Iterable[tuple[str, str]], desc: str) -> Iterator[tuple[str, str]]:
        from tqdm import tqdm

        self._keyed = list(keyed)
        todo = [(key, item) for key, item in self._keyed if not self.can_reuse(key)]
        mine = self.share.mine(todo)
        yield from tqdm(mine, desc=f"{desc} (process {self.share.rank + 1}/{self.share.count})",
                        unit="item", disable=not self.share.main)

    def add(self, key: str, item: str, tensors: dict[str, Any],
            meta: dict[str, Any] | None = None) -> None:
        self._part.add(key, item, tensors, meta)

    def close(self) -> None:
        self._part.close()
        self.share.wait()
        if not self.share.main:
            return
        parts = [ShardReader(part_dir(self.folder, r)) for r in range(self.share.count)]
        holder = {key: part for part in parts for key in part.by_key}
        for key, item in self._keyed:
            if self.can_reuse(key):
                self.reuse(key, item)
            elif key in holder:
                self.copy(holder[key], key, item)
                self.computed += 1
        super().close()
        remove_parts(self.folder)


def shard_writer(out: Path, previous: Path | None, share: Share) -> ShardWriter:
    """The writer of a per-item stage output: it reuses the previous output's unchanged
    items and, under several processes, computes only this process's share."""
    reader = open_previous(previous)
    if share.count == 1:
        return ShardWriter(out, reader)
    return SharedShardWriter(out, reader, share)
