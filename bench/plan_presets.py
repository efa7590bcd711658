"""The README's preset table: the planner's figures for each GPU preset on common cards.

Every preset in recipes/ but the tiny one is planned on the published LTX-2 19B config
(``aiprod-recipes plan --model ltx2-19b``) for the memory the cards report (nvidia-smi's
total), and one markdown table is printed: whether it fits, the planned peak, and the
cheapest spec change when it does not.

    python bench/plan_presets.py
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from aiprod_recipes import recipes  # noqa: E402

CARDS: tuple[tuple[str, int], ...] = (
    ("24 GB (RTX 4090, 24564 MiB)", 24564 << 20),
    ("32 GB (RTX 5090, 32607 MiB)", 32607 << 20),
    ("48 GB (L40S, 46068 MiB)", 46068 << 20),
    ("80 GB (H100, 81559 MiB)", 81559 << 20),
)
MODEL = "ltx2-19b"


def cell(plan: object) -> str:
    est = plan.estimate  # type: ignore[attr-defined]
    peak = f"{est.peak_bytes / 2**30:.1f} GiB"
    if plan.fits:  # type: ignore[attr-defined]
        return f"yes, {peak}"
    s = plan.suggestion  # type: ignore[attr-defined]
    if s is None:
        return f"no, {peak}; no single change found"
    return f"no, {peak}; {'; '.join(s.changes)} ({s.peak_bytes / 2**30:.1f} GiB)"


def main() -> int:
    from aiprod_recipes.planner.configs import published
    from aiprod_recipes.planner.estimate import make_plan
    from aiprod_recipes.planner.params import inventory
    from aiprod_recipes.planner.workload import largest
    from aiprod_recipes.specio import load_spec

    config = published(MODEL)
    inv = inventory(config)
    header = "| preset | largest bucket | " + " | ".join(name for name, _ in CARDS) + " |"
    lines = [header, "|" + "---|" * (len(CARDS) + 2)]
    for name in recipes.names():
        if name == "tiny":
            continue
        spec = load_spec(recipes.recipe_path(name))
        b = largest(spec).bucket
        cells = [cell(make_plan(spec, config, inv, "cuda", size)) for _, size in CARDS]
        lines.append(f"| `{name}` | {b.width}x{b.height}x{b.frames} | " + " | ".join(cells)
                     + " |")
        print(lines[-1], file=sys.stderr, flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
