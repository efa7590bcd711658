"""caption: one caption per scene clip, from sidecar files, a local Qwen2.5-Omni or Gemini.

A caption is reused while the clip's content hash and the caption section are unchanged
(sidecar captions also key on the caption text itself), so adding clips captions only the
new ones. Per-clip model failures are reported, not fatal; a clip without a caption stops
the stage or is dropped, as ``caption.on_missing`` says.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from tqdm import tqdm

from aiprod_recipes.captioning.backends import CaptionBackendUnavailable, make_backend
from aiprod_recipes.captioning.cleanup import clean_caption, with_trigger
from aiprod_recipes.captioning.sidecar import CaptionFileError
from aiprod_recipes.names import CAPTION_FAILURES_FILE, CAPTIONS_FILE, CLIP_TENSOR, INGEST
from aiprod_recipes.spec import Caption, Spec
from aiprod_recipes.specio import section_values
from aiprod_recipes.stages.context import Report, StageFailed, StagePaths
from aiprod_recipes.store.parts import gather_json, remove_parts
from aiprod_recipes.store.shards import ShardReader, canonical_json, item_key


def read_captions(folder: Path) -> dict[str, str]:
    """Clip id -> caption, from a caption stage output."""
    path = folder / CAPTIONS_FILE
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return {r["item"]: r["caption"] for r in rows}


def _previous(folder: Path | None) -> dict[str, dict[str, Any]]:
    if folder is None or not (folder / CAPTIONS_FILE).exists():
        return {}
    lines = (folder / CAPTIONS_FILE).read_text(encoding="utf-8").splitlines()
    return {row["key"]: row for row in map(json.loads, filter(None, lines))}


def _finish(text: str, cfg: Caption) -> str:
    return with_trigger(clean_caption(text) if cfg.clean else " ".join(text.split()),
                        cfg.trigger_word)


def run(spec: Spec, paths: StagePaths) -> Report:
    cfg = spec.caption
    clips = ShardReader(paths.upstream(INGEST))
    params = section_values(spec, ("caption",))
    previous = _previous(paths.previous)
    with tempfile.TemporaryDirectory(dir=paths.out) as work:
        try:
            backend = make_backend(cfg, paths.raw_dir, [r["source"] for r in clips.rows],
                                   Path(work))
        except CaptionFileError as e:
            raise StageFailed(f"caption: {e}") from e
        code = paths.code_digest if backend.reproducible else None
        keyed = [(row, item_key(stage="caption", content=row["content_hash"], params=params,
                                sidecar=backend.key_part(row["source"]), code=code))
                 for row in clips.rows]
        reused = [previous[key] for _, key in keyed if key in previous]
        todo = [(row, key) for row, key in keyed if key not in previous]
        done = _caption_clips(backend, cfg, clips, paths.share.mine(todo), paths.share.main)
    gathered = gather_json(paths.share, paths.out, done)
    if gathered is None:  # another process of several: the main one writes
        return {}
    remove_parts(paths.out)
    order = {row["item"]: i for i, row in enumerate(clips.rows)}
    rows = reused + [row for part in gathered for row in part["rows"]]
    failures = sorted((f for part in gathered for f in part["failures"]),
                      key=lambda f: order[f["item"]])
    missing = sorted((m for part in gathered for m in part["missing"]), key=order.__getitem__)
    _check_missing(missing, cfg, failures)
    rows.sort(key=lambda r: r["item"])
    (paths.out / CAPTIONS_FILE).write_text("".join(canonical_json(r) + "\n" for r in rows),
                                           encoding="utf-8")
    (paths.out / CAPTION_FAILURES_FILE).write_text(json.dumps(failures, indent=2) + "\n",
                                                   encoding="utf-8")
    computed = len(rows) - len(reused)
    print(f"caption: {computed} captioned, {len(reused)} reused, {len(failures)} failed, "
          f"{len(missing)} without a caption", file=sys.stderr)
    return {"captioned": computed, "reused": len(reused), "failed": len(failures),
            "missing": len(missing)}


def _caption_clips(backend: Any, cfg: Caption, clips: ShardReader,
                   todo: list[tuple[dict[str, Any], str]], progress: bool) -> dict[str, list]:
    """Caption the clips of ``todo`` (this process's share of those not reused): the new
    caption rows, the per-clip failures and the clips left without a caption."""
    rows: list[dict[str, Any]] = []
    missing: list[str] = []
    failures: list[dict[str, str]] = []
    for row, key in tqdm(todo, desc="caption", unit="clip", disable=not progress):
        item, source = row["item"], row["source"]
        try:
            text = backend.caption(item, source,
                                   lambda item=item: clips.item_bytes(item, CLIP_TENSOR))
        except CaptionBackendUnavailable as e:
            raise StageFailed(str(e)) from e
        except Exception as e:  # a per-clip failure is reported, the rest go on
            if backend.is_fatal(e):
                raise
            failures.append({"item": item, "error": f"{type(e).__name__}: {e}"})
            text = None
        caption = _finish(text, cfg) if text is not None else ""
        if not caption:
            missing.append(item)
            continue
        rows.append({"item": item, "key": key, "source": source, "caption": caption})
    return {"rows": rows, "failures": failures, "missing": missing}


def _check_missing(missing: list[str], cfg: Caption, failures: list[dict[str, str]]) -> None:
    """Missing captions stop the stage (on_missing = "error") or drop the clips."""
    if not missing:
        return
    listed = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10
                                        else "")
    if cfg.on_missing == "error":
        why = f"; first failure: {failures[0]['error']}" if failures else ""
        raise StageFailed(f"caption: no caption for {len(missing)} clip(s): {listed}{why} "
                          '(add sidecar captions or set caption.on_missing = "drop")')
    print(f"caption: dropping {len(missing)} clip(s) without a caption: {listed}",
          file=sys.stderr)
