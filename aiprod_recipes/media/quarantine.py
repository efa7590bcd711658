"""The quarantine report of an ingest run: what was rejected, skipped, or kept with damage.

Three lists, each for a person to read:

- ``rejected``: clips that could not be used (empty, truncated, undecodable, too short...),
  each with a reason; strict mode turns the first one into an error.
- ``skipped``: files under the raw folder that are not clips (caption sidecars, hidden
  files, audio, documents), each with a reason; never an error.
- ``damaged``: damaged spots in sources that were kept, one entry per spot with its time in
  the source, its stream, what went wrong and the clip that holds it. A rerun that reuses a
  source's clips does not decode it again, so the entries are carried over from the
  previous report by the source's key.

The file is written with sorted keys and a fixed order, so identical runs give identical
bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiprod_recipes.media.report import Damage
from aiprod_recipes.media.sources import CAPTION_FILE

Scene = tuple[float, float]


def _damage_order(entry: dict[str, Any]) -> tuple[str, bool, float, str, str]:
    t = entry["time_s"]
    return entry["source"], t is None, t or 0.0, entry["stream"], entry["what"]


@dataclass
class Quarantine:
    """Inputs that were rejected, files that are not clips, and damage kept in clips."""

    rejected: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    damaged: list[dict[str, Any]] = field(default_factory=list)

    def write(self, path: Path) -> None:
        doc = {"rejected": self.rejected, "skipped": self.skipped,
               "damaged": sorted(self.damaged, key=_damage_order)}
        path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")

    def summary(self, total: int) -> str:
        """One line about what was rejected, damaged or skipped ("" when nothing was)."""
        parts = []
        if self.rejected:
            names = ", ".join(f"{r['source']} ({r['reason']})" for r in self.rejected[:5])
            more = "" if len(self.rejected) <= 5 else f" and {len(self.rejected) - 5} more"
            parts.append(f"{len(self.rejected)} of {total} input(s) quarantined: {names}{more}")
        if self.damaged:
            clips = {d["item"] for d in self.damaged if d["item"] is not None}
            parts.append(f"{len(self.damaged)} damaged spot(s) in {len(clips)} kept clip(s)")
        if self.skipped:
            parts.append(f"{len(self.skipped)} file(s) skipped as not clips: "
                         + _by_reason(self.skipped))
        return "; ".join(parts)


def _by_reason(skipped: list[dict[str, str]]) -> str:
    """Counts by reason, with a few names for every reason but the expected caption files."""
    groups: dict[str, list[str]] = {}
    for entry in skipped:
        groups.setdefault(entry["reason"], []).append(entry["source"])
    out = []
    for reason, names in sorted(groups.items()):
        shown = "" if reason == CAPTION_FILE else \
            " (" + ", ".join(names[:3]) + (", ..." if len(names) > 3 else "") + ")"
        out.append(f"{len(names)} {reason}{shown}")
    return ", ".join(out)


def damage_entries(source: str, source_key: str, scenes: list[Scene], items: list[str],
                   found: Iterable[Damage]) -> list[dict[str, Any]]:
    """Entries for the damage found while cutting one source, one per damaged spot.

    Sound is read per scene from a little before its start, so a spot near a cut can be
    seen twice; repeats are dropped. A spot names the clip whose time range holds it, or
    None when it lies outside every kept scene.
    """
    unique = {(d.time_s, d.stream, d.what): d for d in found}
    entries = []
    for d in unique.values():
        inside = [item for item, (a, b) in zip(items, scenes, strict=True)
                  if d.time_s is not None and a <= d.time_s < b]
        entries.append({"source": source, "source_key": source_key,
                        "item": inside[0] if inside else None, **d.as_dict()})
    return entries


def recorded_damage(path: Path) -> dict[str, list[dict[str, Any]]]:
    """The damage entries of a previous report, by source key ({} when there is none)."""
    if not path.is_file():
        return {}
    by_key: dict[str, list[dict[str, Any]]] = {}
    for entry in json.loads(path.read_text()).get("damaged", []):
        if entry.get("source_key"):
            by_key.setdefault(entry["source_key"], []).append(entry)
    return by_key
