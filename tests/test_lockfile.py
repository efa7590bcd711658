"""requirements.lock keeps step with pyproject.toml and with the environment.

Provenance records package versions in every stage output, so a fresh clone rebuilds the
committed dvc.lock only with the versions the lock pins: a dependency added or narrowed in
pyproject.toml without `make lock`, or an environment that drifted from the lock, is caught
here rather than as changed output hashes.
"""

from __future__ import annotations

import re
from importlib import metadata

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from aiprod_recipes.provenance import PACKAGES
from tests.conftest import REPO

LOCK = REPO / "requirements.lock"


def _pins() -> dict[str, str]:
    """Package -> pinned version, for the pins whose markers hold on this interpreter."""
    text = re.sub(r"\\\n", " ", LOCK.read_text(encoding="utf-8"))
    pins = {}
    for line in text.splitlines():
        entry = line.split("#", 1)[0].split(" --hash=")[0].strip()
        if not entry:
            continue
        req = Requirement(entry)
        assert len(req.specifier) == 1 and next(iter(req.specifier)).operator == "==", entry
        if req.marker is None or req.marker.evaluate():
            pins[canonicalize_name(req.name)] = next(iter(req.specifier)).version
    return pins


def _declared() -> list[Requirement]:
    """What pyproject.toml asks for: dependencies, the dev extras, the build backend."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    declared = [*project["project"]["dependencies"],
                *project["project"]["optional-dependencies"]["dev"],
                *project["build-system"]["requires"]]
    return [Requirement(r) for r in declared]


def test_the_lock_satisfies_pyproject() -> None:
    pins = _pins()
    wrong = []
    for req in _declared():
        if req.marker is not None and not req.marker.evaluate({"extra": "dev"}):
            continue
        pinned = pins.get(canonicalize_name(req.name))
        if pinned is None or not req.specifier.contains(pinned, prereleases=True):
            wrong.append(f"pyproject.toml asks for {req}, requirements.lock pins {pinned}")
    assert not wrong, "\n".join([*wrong, "run `make lock` and commit requirements.lock"])


def test_the_environment_has_the_locked_versions_provenance_records() -> None:
    pins = _pins()
    drift = []
    for name in PACKAGES:
        if name == "aiprod-recipes":
            continue
        installed, pinned = metadata.version(name), pins[canonicalize_name(name)]
        if installed != pinned:
            drift.append(f"{name}: installed {installed}, requirements.lock pins {pinned}")
    assert not drift, "\n".join([*drift, "run `make install` (stage outputs record these)"])
