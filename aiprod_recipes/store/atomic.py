"""Atomic outputs: a stage writes into a hidden temporary folder that replaces the real one
only when the stage succeeded.

DVC caches whatever exists when a command exits 0, and a killed stage must not leave a
half-written output that a later run mistakes for a finished one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _stale(final: Path) -> list[Path]:
    """Leftovers of earlier runs that were killed: temporary and old folders of ``final``."""
    if not final.parent.exists():
        return []
    prefixes = (f".{final.name}.tmp-", f".{final.name}.old-")
    return [p for p in final.parent.iterdir() if p.name.startswith(prefixes)]


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder; on success it becomes ``final`` in one rename.

    On any exception (KeyboardInterrupt included) the temporary folder is removed and the
    previous ``final`` is left as it was.
    """
    for leftover in _stale(final):
        shutil.rmtree(leftover, ignore_errors=True)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file through a temporary name and a rename, so readers never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
