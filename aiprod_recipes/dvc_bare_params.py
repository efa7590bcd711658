"""Make DVC's bare ``-S key=value`` target params.toml in this project.

DVC sends a bare ``dvc exp run -S lora.rank=32`` to params.yaml. Projects like this one keep
their spec in params.toml, and users type the bare form. ``install()`` (run at interpreter
start through a .pth file that ``aiprod-recipes setup-dvc`` writes into the environment)
wraps DVC's ``to_path_overrides`` when DVC imports it: bare overrides then go to params.toml
whenever the repository has a params.toml and no params.yaml. Other projects in the same
environment are untouched, and the explicit ``-S params.toml:key=value`` keeps working.

The wrapper depends on a DVC internal; when a DVC release moves it, ``dvc exp run`` fails
with a message naming this module instead of silently writing params.yaml, and the test
suite's end-to-end test of the bare command fails.

A DVC without the hook (installed with pipx or system packages) rejects the bare form with
"Key 'lora' is not in struct", and the ``-S +lora.rank=32`` it suggests writes a params.yaml
that no stage reads. ``stray_params_yaml`` names that file so that stages refuse to run.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import sysconfig
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

TARGET_MODULE = "dvc.repo.experiments.run"
TARGET_FUNCTION = "to_path_overrides"
DVC_DEFAULT = "params.yaml"
PROJECT_PARAMS = "params.toml"
"""Same as names.SPEC_FILE; repeated here because this module runs at every interpreter
start in the environment and must import nothing of the package."""
PTH_NAME = "zz_aiprod_recipes_dvc.pth"
PTH_LINE = "import aiprod_recipes.dvc_bare_params as m; m.install()\n"


def _repo_root(start: Path) -> Path | None:
    """The closest folder at or above ``start`` holding a .dvc folder."""
    for folder in (start, *start.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return None


def applies(cwd: Path) -> bool:
    """The remap applies in DVC repos with a params.toml and no params.yaml."""
    root = _repo_root(cwd)
    return (
        root is not None
        and (root / PROJECT_PARAMS).is_file()
        and not (root / DVC_DEFAULT).exists()
    )


def remap(overrides: dict[str, list[str]], cwd: Path) -> dict[str, list[str]]:
    """Move the bare overrides DVC filed under params.yaml to params.toml."""
    if DVC_DEFAULT not in overrides or not applies(cwd):
        return overrides
    out = {k: list(v) for k, v in overrides.items() if k != DVC_DEFAULT}
    out.setdefault(PROJECT_PARAMS, []).extend(overrides[DVC_DEFAULT])
    return out


def _wrap(original: Callable[..., dict[str, list[str]]]) -> Callable[..., dict[str, list[str]]]:
    def to_path_overrides(path_params: Any) -> dict[str, list[str]]:
        return remap(original(path_params), Path(os.getcwd()))

    to_path_overrides.__wrapped__ = original  # type: ignore[attr-defined]
    return to_path_overrides


def patch(module: ModuleType) -> None:
    """Wrap ``to_path_overrides`` in an imported ``dvc.repo.experiments.run``."""
    original = getattr(module, TARGET_FUNCTION, None)
    if not callable(original):
        raise RuntimeError(
            f"aiprod_recipes.dvc_bare_params: {TARGET_MODULE}.{TARGET_FUNCTION} is gone in this "
            "DVC release, so a bare `dvc exp run -S key=value` cannot be sent to params.toml. "
            "Use `-S params.toml:key=value`, or pin the DVC version in pyproject.toml."
        )
    if not hasattr(original, "__wrapped__"):
        setattr(module, TARGET_FUNCTION, _wrap(original))


class _Finder(importlib.abc.MetaPathFinder):
    """Patches the target module right after DVC imports it; costs nothing otherwise."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: Any = None) -> Any:
        if fullname != TARGET_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_patch(module: ModuleType) -> None:
            exec_module(module)
            patch(module)

        loader.exec_module = exec_and_patch  # type: ignore[method-assign]
        return spec


def install() -> None:
    """Register the import hook (idempotent); patch at once if DVC is already imported."""
    if TARGET_MODULE in sys.modules:
        patch(sys.modules[TARGET_MODULE])
    elif not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def pth_path() -> Path:
    """Where the start-up hook lives in the running environment."""
    return Path(sysconfig.get_paths()["purelib"]) / PTH_NAME


def write_pth() -> Path:
    """Install the start-up hook into this environment's site-packages."""
    path = pth_path()
    path.write_text(PTH_LINE, encoding="utf-8")
    return path


def _settings(path: Path) -> list[str]:
    """The ``key=value`` pairs a params.yaml sets, dotted, or none if it cannot be read."""
    import yaml  # only when the file exists: this module loads at every interpreter start

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []
    out: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        elif prefix:
            out.append(f"{prefix[:-1]}={node}")

    walk(data, "")
    return out


def stray_params_yaml(spec_file: Path) -> str | None:
    """Why no stage may run, when a params.yaml lies beside the spec file; else None.

    The values in it were never used, and while it exists even the hooked DVC sends bare
    overrides to it (see ``applies``), so each later experiment would silently run with the
    old spec too.
    """
    stray = spec_file.parent / DVC_DEFAULT
    if not stray.exists():
        return None
    settings = _settings(stray)
    example = settings[0] if settings else "lora.rank=32"
    unused = f" (it sets {', '.join(settings)})" if settings else ""
    return (
        f"{stray} exists, but this project's spec is {spec_file.name} and no stage reads "
        f"{DVC_DEFAULT}{unused}. A DVC without this project's start-up hook (one installed "
        "with pipx or system packages) writes it for `dvc exp run -S +key=value`. Delete "
        f"{stray}, then run the experiment again in one of these ways:\n"
        "  - with the dvc of this project's environment (`. .venv/bin/activate`), which has "
        "the hook;\n"
        "  - with your dvc, after installing this project into that dvc's Python environment "
        "and running `aiprod-recipes setup-dvc` there;\n"
        f"  - with the spec file named: `dvc exp run -S {spec_file.name}:{example}`."
    )
