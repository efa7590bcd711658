"""Per-item stage outputs: many items per safetensors shard, plus a JSONL manifest.

DVC's cost is per file, so one file per clip stops scaling past ~10k clips. Items go to the
shard named by the first hex digits of their key, so adding one item rewrites one shard
and the rest keep their hashes. Each item is keyed by everything that produced it
(``item_key``); a rerun copies the items whose key is unchanged from the previous output and
computes only the rest. Writing is streamed shard by shard (items arrive in key order), so
memory does not grow with the number of items.

Identical inputs give byte-identical shards and manifests: no timestamps, sorted names.

torch is imported only where tensors are read or written: a stage that only reads manifests
(split) or stored bytes (caption), or writes an empty output (a disabled stage), starts
without it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import safe_open

from aiprod_recipes.names import MANIFEST_FILE

if TYPE_CHECKING:
    import numpy as np
    import torch

Tensor = Any
"""A torch tensor or a numpy array (kept loose so that this module never imports torch)."""
_NO_NUMPY = frozenset({"BF16", "F8_E4M3", "F8_E5M2"})
"""safetensors dtypes numpy cannot hold."""

FORMAT_VERSION = 1
PREFIX_LEN = 2
"""Shard by the first two hex digits of the key: at most 256 shards."""


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: the form that is hashed and written."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def item_key(**parts: Any) -> str:
    """The key of an item: a digest of everything that shapes it (content hash, the stage's
    params, the model fingerprint) and the store's format version."""
    doc = canonical_json({"format": FORMAT_VERSION, **parts})
    return hashlib.sha256(doc.encode()).hexdigest()[:32]


def shard_name(key: str) -> str:
    return f"shard-{key[:PREFIX_LEN]}.safetensors"


class ShardReader:
    """Read a stage output: the manifest rows and the tensors of any item."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.rows: list[dict[str, Any]] = []
        path = folder / MANIFEST_FILE
        if path.exists():
            with open(path, encoding="utf-8") as f:
                self.rows = [json.loads(line) for line in f if line.strip()]
        self.by_key = {row["key"]: row for row in self.rows}
        self.by_item = {row["item"]: row for row in self.rows}
        self._by_shard: dict[str, list[str]] = {}
        for row in self.rows:
            self._by_shard.setdefault(row["shard"], []).append(row["key"])

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, key: str) -> bool:
        return key in self.by_key

    def shard_keys(self, shard: str) -> list[str]:
        """The keys stored in one shard file, in key order."""
        return sorted(self._by_shard.get(shard, []))

    def tensors(self, key: str) -> dict[str, torch.Tensor]:
        """The tensors stored for one item."""
        row = self.by_key[key]
        with safe_open(self.folder / row["shard"], framework="pt") as f:
            return {name: f.get_tensor(f"{key}.{name}") for name in row["tensors"]}

    def arrays(self, key: str) -> dict[str, np.ndarray]:
        """The tensors stored for one item, as numpy arrays (not for bfloat16)."""
        row = self.by_key[key]
        with safe_open(self.folder / row["shard"], framework="numpy") as f:
            return {name: f.get_tensor(f"{key}.{name}") for name in row["tensors"]}

    def numpy_compatible(self, key: str) -> bool:
        """Whether every tensor of an item has a numpy dtype (bfloat16 has none)."""
        row = self.by_key[key]
        with safe_open(self.folder / row["shard"], framework="numpy") as f:
            return all(f.get_slice(f"{key}.{name}").get_dtype() not in _NO_NUMPY
                       for name in row["tensors"])

    def item_tensors(self, item: str) -> dict[str, torch.Tensor]:
        return self.tensors(self.by_item[item]["key"])

    def item_bytes(self, item: str, name: str) -> bytes:
        """One stored uint8 tensor of an item as bytes (a scene clip's mp4, for instance)."""
        row = self.by_item[item]
        with safe_open(self.folder / row["shard"], framework="numpy") as f:
            return f.get_tensor(f"{row['key']}.{name}").tobytes()


def open_previous(folder: Path | None) -> ShardReader | None:
    """The previous output as a reuse source, when there is one with a manifest."""
    if folder is None or not (folder / MANIFEST_FILE).exists():
        return None
    return ShardReader(folder)


class ShardWriter:
    """Write items, in key order, into prefix shards; reuse unchanged items from ``previous``.

    Use as a context manager; ``close`` writes the last shard and the manifest.

    A shard whose items all come unchanged from one stored output that holds exactly those
    items in its shard of the same name would be written byte for byte as that file is, so
    the file is copied instead: adding one item to many rewrites one shard, and a run that
    reuses everything loads no tensor (nor torch).
    """

    def __init__(self, folder: Path, previous: ShardReader | None = None) -> None:
        self.folder = folder
        self.previous = previous
        self.rows: list[dict[str, Any]] = []
        self._pending: list[tuple[str, dict[str, Tensor] | ShardReader]] = []
        """The current shard's items: their tensors, or the stored output holding them."""
        self._pending_shard: str | None = None
        self._last_key = ""
        self.computed = 0
        self.reused = 0

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None:
            self.close()

    def can_reuse(self, key: str) -> bool:
        return self.previous is not None and key in self.previous

    def to_compute(self, keyed: Iterable[tuple[str, str]], desc: str) -> Iterator[tuple[str, str]]:
        """Walk (key, item) pairs (sorted by key) with a progress bar: unchanged items are
        copied from the previous output here, the others are yielded for the caller to
        compute and ``add``."""
        from tqdm import tqdm

        for key, item in tqdm(keyed, desc=desc, unit="item"):
            if self.can_reuse(key):
                self.reuse(key, item)
            else:
                yield key, item

    def reuse(self, key: str, item: str) -> None:
        """Copy an unchanged item from the previous output."""
        assert self.previous is not None
        self.copy(self.previous, key, item)
        self.reused += 1

    def copy(self, source: ShardReader, key: str, item: str) -> None:
        """Store an item exactly as ``source`` holds it (tensors and metadata); its tensors
        are read when its shard is written, if that shard cannot be copied whole."""
        row = source.by_key[key]
        meta = {k: v for k, v in row.items() if k not in ("key", "item", "shard", "tensors")}
        self._add(key, item, source, row["tensors"], meta)

    def add(self, key: str, item: str, tensors: dict[str, Tensor],
            meta: dict[str, Any] | None = None) -> None:
        """Store a freshly computed item: torch tensors, or numpy arrays (a stage that stores
        only arrays, such as ingest's mp4 bytes, never needs torch)."""
        held = {name: _held(t) for name, t in tensors.items()}
        self._add(key, item, held, sorted(tensors), meta or {})
        self.computed += 1

    def _add(self, key: str, item: str, tensors: dict[str, Tensor] | ShardReader,
             names: list[str], meta: dict[str, Any]) -> None:
        if key <= self._last_key:
            raise ValueError(f"items must be added in increasing key order ({key} after "
                             f"{self._last_key}) and once each")
        self._last_key = key
        shard = shard_name(key)
        if shard != self._pending_shard:
            self._flush()
            self._pending_shard = shard
        self._pending.append((key, tensors))
        self.rows.append({**meta, "key": key, "item": item, "shard": shard, "tensors": names})

    def _whole_copy(self) -> Path | None:
        """The stored shard file identical to the pending shard, if there is one."""
        sources = {id(held): held for _, held in self._pending}
        if len(sources) != 1:
            return None
        (source,) = sources.values()
        keys = [key for key, _ in self._pending]
        if not isinstance(source, ShardReader) or source.shard_keys(self._pending_shard) != keys:
            return None
        return source.folder / str(self._pending_shard)

    def _flush(self) -> None:
        if self._pending_shard is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / self._pending_shard
        stored = self._whole_copy()
        if stored is not None:
            shutil.copyfile(stored, target)
        else:
            _save(self._pending, target)
        self._pending = []
        self._pending_shard = None

    def close(self) -> None:
        self._flush()
        self.folder.mkdir(parents=True, exist_ok=True)
        lines = [canonical_json(row) for row in sorted(self.rows, key=lambda r: r["item"])]
        (self.folder / MANIFEST_FILE).write_text("".join(line + "\n" for line in lines),
                                            encoding="utf-8")


def _held(t: Tensor) -> Tensor:
    """A freshly computed tensor as the writer keeps it until its shard is written."""
    import numpy as np

    if isinstance(t, np.ndarray):
        return np.ascontiguousarray(t)
    return t.detach().to("cpu").contiguous()


def _save(pending: list[tuple[str, dict[str, Tensor] | ShardReader]], target: Path) -> None:
    """Write one shard. Arrays and torch tensors of one dtype and shape serialize to the same
    bytes, so a shard with no fresh torch tensor and no bfloat16 is written through numpy."""
    import numpy as np

    fresh = [t for _, held in pending if not isinstance(held, ShardReader) for t in held.values()]
    stored = [(key, held) for key, held in pending if isinstance(held, ShardReader)]
    as_numpy = all(isinstance(t, np.ndarray) for t in fresh) and all(
        held.numpy_compatible(key) for key, held in stored)
    tensors: dict[str, Tensor] = {}
    for key, held in pending:
        found = (held if not isinstance(held, ShardReader)
                 else held.arrays(key) if as_numpy else held.tensors(key))
        tensors.update({f"{key}.{name}": t for name, t in found.items()})
    ordered = dict(sorted(tensors.items()))
    metadata = {"format": str(FORMAT_VERSION)}
    if as_numpy:
        from safetensors.numpy import save_file as save_arrays

        save_arrays(ordered, str(target), metadata=metadata)
    else:
        import torch
        from safetensors.torch import save_file

        save_file({k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                   for k, v in ordered.items()}, str(target), metadata=metadata)


def iter_rows(folder: Path) -> Iterator[dict[str, Any]]:
    """Manifest rows of a stage output, without opening any shard."""
    yield from ShardReader(folder).rows
