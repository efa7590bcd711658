"""Say why `make repro` on a clean clone rewrote dvc.lock.

A stage whose outputs changed while its command, dependencies and params did not is a cause:
the same inputs gave other bytes, either because a package that provenance records has
another version than the run that made the committed dvc.lock, or because the stage is not
deterministic. A stage whose code, params or raw inputs changed means the committed dvc.lock
is stale (committed without a `dvc repro`). A stage whose only changed inputs are other
stages' outputs follows from those.

Run from the repository root with the environment's Python (it reads YAML and git).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

LOCK = "dvc.lock"


def _stages(text: str) -> dict[str, Any]:
    return (yaml.safe_load(text) or {}).get("stages", {})


def _hashes(stage: dict[str, Any], key: str) -> dict[str, str | None]:
    return {e["path"]: e.get("md5") for e in stage.get(key, [])}


def _changed(old: dict[str, str | None], new: dict[str, str | None]) -> list[str]:
    return sorted(p for p in old.keys() | new.keys() if old.get(p) != new.get(p))


def _recorded_packages(outs: list[str]) -> dict[str, str] | None:
    """Package versions in the rebuilt output's provenance.json, if it has one."""
    for out in outs:
        path = Path(out) / "provenance.json"
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8")).get("packages")
    return None


def _made_by_a_stage(dep: str, outs: set[str]) -> bool:
    return any(dep == out or dep.startswith(out + "/") for out in outs)


def explain(committed: dict[str, Any], rebuilt: dict[str, Any]) -> list[str]:
    lines = []
    all_outs = {p for stage in rebuilt.values() for p in _hashes(stage, "outs")}
    for name, new in rebuilt.items():
        old = committed.get(name)
        if old is None:
            lines.append(f"- {name}: not in the committed {LOCK}")
            continue
        outs = _changed(_hashes(old, "outs"), _hashes(new, "outs"))
        inputs = _changed(_hashes(old, "deps"), _hashes(new, "deps"))
        if old.get("params") != new.get("params"):
            inputs.append("params")
        if old.get("cmd") != new.get("cmd"):
            inputs.append("cmd")
        if not outs and not inputs:
            continue
        own = [i for i in inputs if not _made_by_a_stage(i, all_outs)]
        if own:
            lines.append(f"- {name}: STALE: {', '.join(own)} changed since {LOCK} was "
                         "committed (run `dvc repro` and commit dvc.lock)")
            continue
        if inputs:
            lines.append(f"- {name}: follows from upstream outputs ({', '.join(inputs)})")
            continue
        lines.append(f"- {name}: CAUSE: same command, deps and params, other output bytes "
                     f"({', '.join(outs)})")
        packages = _recorded_packages(outs)
        if packages:
            pins = ", ".join(f"{k}=={v}" for k, v in sorted(packages.items()))
            lines.append(f"    versions this run recorded: {pins}")
    lines += [f"- {name}: in the committed {LOCK}, not rebuilt"
              for name in committed if name not in rebuilt]
    return lines


def main() -> int:
    committed = _stages(subprocess.run(["git", "show", f"HEAD:{LOCK}"], check=True,
                                       capture_output=True, text=True).stdout)
    rebuilt = _stages(Path(LOCK).read_text(encoding="utf-8"))
    print(f"`make repro` on this clean clone did not rebuild the committed {LOCK}:")
    print("\n".join(explain(committed, rebuilt)))
    print(
        "\nFor a CAUSE stage: if the versions above differ from the ones the committed run\n"
        "recorded, the environment that made the committed dvc.lock was not the one\n"
        "requirements.lock pins (run `make install`, then `dvc repro`, and commit dvc.lock);\n"
        "if they are the same, the stage gives other bytes for the same inputs: run it twice\n"
        "(`dvc repro -f -s STAGE`) and compare the files.\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
