"""Provenance written beside every stage output: what produced it.

It holds the resolved spec sections, package versions and digests of the inputs, and no
timestamps, so identical inputs give a byte-identical file and DVC can skip downstream.
The runtime writes it into every stage output, so this module counts as code of every
stage (registry.OUTPUT_WRITERS): a change here reruns them all.
"""

from __future__ import annotations

import functools
import hashlib
import json
from importlib import metadata
from pathlib import Path
from typing import Any

from aiprod_recipes.names import PROVENANCE_FILE
from aiprod_recipes.spec import Spec
from aiprod_recipes.specio import section_values

PACKAGES = (
    "aiprod-recipes", "torch", "torchaudio", "ltx-core", "transformers", "peft", "accelerate",
    "dvc", "msgspec", "safetensors", "av", "scenedetect-headless", "numpy",
)
FULL_HASH_LIMIT = 64 * 2**20
"""Files up to this size are hashed whole; larger ones (checkpoints) by size, head and tail."""
_SAMPLE = 2**20


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape results."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


@functools.cache
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(4 * 2**20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    """Full sha256 of a file, remembered for the process while its size and mtime hold:
    a stage that hashes its inputs (ingest) and the provenance of the same inputs then read
    each file once."""
    st = path.stat()
    return _sha256(path.resolve(), st.st_size, st.st_mtime_ns)


def file_digest(path: Path) -> str:
    """sha256 of a file; for very large files, of its size, first and last MiB."""
    size = path.stat().st_size
    if size <= FULL_HASH_LIMIT:
        return "sha256:" + sha256_file(path)
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(_SAMPLE))
        f.seek(size - _SAMPLE)
        h.update(f.read(_SAMPLE))
    return "sampled-sha256:" + h.hexdigest()


def path_digest(path: Path) -> str:
    """Digest of a file or of a folder (relative names and file digests, sorted).

    An upstream output's own provenance is left out: it names the params that produced it,
    so including it would make every params change ripple through every downstream output
    even when the data it describes came out byte-identical.
    """
    if path.is_file():
        return file_digest(path)
    if not path.is_dir():
        return "missing"
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file() and q.name != PROVENANCE_FILE):
        h.update(p.relative_to(path).as_posix().encode() + b"\0")
        h.update(file_digest(p).encode() + b"\0")
    return "tree-sha256:" + h.hexdigest()


def stage_record(stage: str, spec: Spec, sections: tuple[str, ...], inputs: list[str],
                 model_fingerprint: str | None) -> dict[str, Any]:
    """What produced a stage output. Run counts (reused, computed) are printed, not recorded:
    an output rebuilt from reused items must be byte-identical to one computed from scratch."""
    record: dict[str, Any] = {
        "stage": stage,
        "spec": section_values(spec, sections),
        "packages": package_versions(),
        "inputs": {d: path_digest(Path(d)) for d in inputs},
    }
    if model_fingerprint is not None:
        record["model_fingerprint"] = model_fingerprint
    return record


def write_provenance(out_dir: Path, record: dict[str, Any]) -> Path:
    """Write provenance.json (sorted keys, stable formatting) into a stage's output."""
    path = out_dir / PROVENANCE_FILE
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
