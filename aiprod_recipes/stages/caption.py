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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from aiprod_recipes.captioning.cleanup import clean_caption, with_trigger
from aiprod_recipes.captioning.sidecar import load_sidecar_captions
from aiprod_recipes.runtime import Report, StageFailed, StagePaths
from aiprod_recipes.spec import Caption, GeminiCaptioner, QwenOmniCaptioner, Spec
from aiprod_recipes.specio import section_values
from aiprod_recipes.store.shards import ShardReader, canonical_json, item_key

CAPTIONS = "captions.jsonl"
FAILURES = "failures.json"
QWEN_AUDIO_RATE = 16_000

Captioner = Callable[[str, bytes], str]
"""(clip id, mp4 bytes) -> raw model text."""


def read_captions(folder: Path) -> dict[str, str]:
    """Clip id -> caption, from a caption stage output."""
    path = folder / CAPTIONS
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return {r["item"]: r["caption"] for r in rows}


def _previous(folder: Path | None) -> dict[str, dict[str, Any]]:
    if folder is None or not (folder / CAPTIONS).exists():
        return {}
    lines = (folder / CAPTIONS).read_text(encoding="utf-8").splitlines()
    return {row["key"]: row for row in map(json.loads, filter(None, lines))}


def _qwen_captioner(backend: QwenOmniCaptioner, cfg: Caption, workdir: Path) -> Captioner:
    """Frames sampled evenly over the clip plus its 16 kHz mono audio go to the model."""
    import numpy as np

    from aiprod_recipes.captioning.qwen_omni import load_from_spec
    from aiprod_recipes.media.audio import decode_audio
    from aiprod_recipes.media.probe import probe
    from aiprod_recipes.media.video import decode_frames

    model = load_from_spec(backend)

    def caption(clip: str, data: bytes) -> str:
        path = workdir / f"{clip}.mp4"
        path.write_bytes(data)
        try:
            info = probe(path)
            fps = backend.num_frames / max(info.duration_s, 1e-3)
            frames = decode_frames(path, fps)[: backend.num_frames]
            audio = decode_audio(path, QWEN_AUDIO_RATE, 1)
            mono = None if audio is None else np.ascontiguousarray(audio[0])
            return model.caption(frames, mono, cfg.instruction, fps=fps)
        finally:
            path.unlink(missing_ok=True)

    return caption


def _gemini_captioner(backend: GeminiCaptioner, cfg: Caption) -> Captioner:
    from aiprod_recipes.captioning.gemini import GeminiClient

    try:
        import google.genai  # noqa: F401
    except ImportError as e:
        raise StageFailed('caption.backend.type = "gemini" needs the google-genai package: '
                          "pip install 'aiprod-recipes[gemini]'") from e

    client = GeminiClient.from_spec(backend)
    client.check_key()
    return lambda clip, data: client.caption(data, cfg.instruction, mime_type="video/mp4",
                                             clip=clip)


def _model_captioner(cfg: Caption, workdir: Path) -> Captioner:
    if isinstance(cfg.backend, QwenOmniCaptioner):
        return _qwen_captioner(cfg.backend, cfg, workdir)
    if isinstance(cfg.backend, GeminiCaptioner):
        return _gemini_captioner(cfg.backend, cfg)
    raise TypeError(f"not a model captioner: {type(cfg.backend).__name__}")


def _fatal(error: Exception) -> bool:
    """Errors that will fail every clip alike (a rejected API key, a missing package) stop
    the stage at once."""
    from aiprod_recipes.captioning.gemini import GeminiKeyError

    return isinstance(error, GeminiKeyError | ImportError)


def _finish(text: str, cfg: Caption) -> str:
    return with_trigger(clean_caption(text) if cfg.clean else " ".join(text.split()),
                        cfg.trigger_word)


def run(spec: Spec, paths: StagePaths) -> Report:
    cfg = spec.caption
    clips = ShardReader(paths.upstream("ingest"))
    params = section_values(spec, ("caption",))
    sidecar = cfg.backend.__struct_config__.tag == "sidecar"
    texts: dict[str, str] = {}
    if sidecar:
        sources = sorted({r["source"] for r in clips.rows})
        texts = load_sidecar_captions(paths.raw_dir, sources, cfg.backend.manifest)
    previous = _previous(paths.previous)
    rows, missing, failures = [], [], []
    reused = computed = 0
    with tempfile.TemporaryDirectory(dir=paths.out) as work:
        captioner: Captioner | None = None
        for row in tqdm(clips.rows, desc="caption", unit="clip"):
            item, source = row["item"], row["source"]
            if sidecar and source not in texts:
                missing.append(item)
                continue
            key = item_key(stage="caption", content=row["content_hash"], params=params,
                           sidecar=texts.get(source))
            if key in previous:
                rows.append(previous[key])
                reused += 1
                continue
            if sidecar:
                text = texts[source]
            else:
                captioner = captioner or _model_captioner(cfg, Path(work))
                try:
                    text = captioner(item, clips.item_tensors(item)["mp4"].numpy().tobytes())
                except Exception as e:  # a per-clip failure is reported, the rest go on
                    if _fatal(e):
                        raise
                    failures.append({"item": item, "error": f"{type(e).__name__}: {e}"})
                    missing.append(item)
                    continue
            caption = _finish(text, cfg)
            if not caption:
                missing.append(item)
                continue
            rows.append({"item": item, "key": key, "source": source, "caption": caption})
            computed += 1
    _check_missing(missing, cfg, failures)
    rows.sort(key=lambda r: r["item"])
    (paths.out / CAPTIONS).write_text("".join(canonical_json(r) + "\n" for r in rows),
                                      encoding="utf-8")
    (paths.out / FAILURES).write_text(json.dumps(failures, indent=2) + "\n", encoding="utf-8")
    print(f"caption: {computed} captioned, {reused} reused, {len(failures)} failed, "
          f"{len(missing)} without a caption", file=sys.stderr)
    return {"captioned": computed, "reused": reused, "failed": len(failures),
            "missing": len(missing)}


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
