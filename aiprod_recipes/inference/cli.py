"""``aiprod-recipes sample``: one video with sound from a prompt, optionally an image
(image-to-video), a reference video (IC-LoRA) and any number of adapters, each with a
strength. Model paths and defaults come from the spec (``eval`` section).

Importing this module is cheap (torch and ltx-core load when the command runs), so the rest
of the command line stays fast."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiprod_recipes.specio import DEFAULT_SPEC

__all__ = ["add_sample_parser", "cmd_sample"]

EXIT_FAILED = 1


def add_sample_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``sample`` on the CLI's subparsers."""
    p = subparsers.add_parser(
        "sample", help="generate one video with sound (text, image or IC-LoRA reference)",
        description=__doc__.splitlines()[0])
    p.set_defaults(func=cmd_sample)
    p.add_argument("--file", "-f", default=str(DEFAULT_SPEC), help="spec file")
    p.add_argument("--prompt", required=True, help="what to generate")
    p.add_argument("--negative-prompt", default=None, help="default: eval.negative_prompt")
    p.add_argument("--image", type=Path, help="first frame (PNG/JPEG): image-to-video")
    p.add_argument("--reference", type=Path, help="reference video (mp4): IC-LoRA")
    p.add_argument("--reference-canny", action="store_true",
                   help="turn --reference into Canny edges first (reference.* settings)")
    p.add_argument("--adapter", action="append", default=[], metavar="PATH[:STRENGTH]",
                   help="LoRA file to fuse (the train output's, or a kept checkpoint), "
                   "strength 1 by default; repeat for several")
    p.add_argument("--transformer", type=Path, metavar="PATH",
                   help="fully fine-tuned transformer weights (train.mode = \"full\") "
                   "instead of the base model's")
    p.add_argument("--steps", type=int, help="default: eval.steps")
    p.add_argument("--cfg", type=float, help="CFG scale, 1 = off (default: eval.cfg_scale)")
    p.add_argument("--stg", type=float, help="STG scale, 0 = off (default: eval.stg_scale)")
    p.add_argument("--seed", type=int, help="default: eval.seed")
    p.add_argument("--width", type=int, help="multiple of 32 (default: eval.bucket)")
    p.add_argument("--height", type=int, help="multiple of 32 (default: eval.bucket)")
    p.add_argument("--frames", type=int, help="8k + 1 (default: eval.bucket)")
    p.add_argument("--fps", type=float, help="default: ingest.fps")
    p.add_argument("--no-audio", action="store_true", help="generate video only")
    p.add_argument("--out", type=Path, required=True, help="output .mp4")
    return p


def _pick(value: object, default: object) -> object:
    return default if value is None else value


def _read_image(path: Path) -> Any:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: not a readable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _reference_latent(spec: Any, encoder: Any, path: Path, width: int, height: int,
                      frames: int, fps: float, canny: bool) -> Any:
    from aiprod_recipes.media.buckets import Bucket, fit_frames
    from aiprod_recipes.media.canny import canny_video
    from aiprod_recipes.media.video import decode_frames
    from aiprod_recipes.model.vae import encode_video

    pixels = decode_frames(path, fps, 0.0, frames / fps)
    if len(pixels) < frames:
        raise ValueError(f"{path}: {len(pixels)} frames at {fps} fps, {frames} needed")
    fitted = fit_frames(pixels, Bucket(width, height, frames), None)
    d = spec.reference.downscale
    if canny:
        fitted = canny_video(fitted, spec.reference)
    elif d > 1:
        fitted = fit_frames(fitted, Bucket(width // d, height // d, frames), None)
    return encode_video(encoder, fitted)


def _full_weights(path: Path | None, base: Path) -> list[Any]:
    """The loader hook that puts fully fine-tuned weights in place of the base transformer's
    (none without ``--transformer``); they must come from this base's architecture (the
    config in their header)."""
    from aiprod_recipes.inference.adapters import FullWeightsWhileLoading
    from aiprod_recipes.model.header import checkpoint_config
    from aiprod_recipes.training.lora import FULL_FORMAT, weights_format

    if path is None:
        return []
    if not path.is_file():
        raise ValueError(f"--transformer {path}: no such file")
    if weights_format(path) != FULL_FORMAT:
        raise ValueError(f"--transformer {path}: not full fine-tune weights (an adapter goes "
                         "with --adapter)")
    if checkpoint_config(path) != checkpoint_config(base):
        raise ValueError(f"--transformer {path}: trained on another architecture than {base}")
    return [FullWeightsWhileLoading(path)]


def _run(args: argparse.Namespace) -> Path:
    from aiprod_recipes.inference.adapters import (
        FuseWhileLoading,
        check_base,
        parse_adapter_arg,
    )
    from aiprod_recipes.inference.guidance import Guidance
    from aiprod_recipes.inference.prompts import encode_prompts
    from aiprod_recipes.inference.sampler import Request, encode_image, free, generate
    from aiprod_recipes.inference.samples import DECODERS
    from aiprod_recipes.model.offload import swap_blocks
    from aiprod_recipes.model.runtime import (
        load_model,
        load_options,
        model_fingerprint,
        model_paths,
    )
    from aiprod_recipes.model.vae import video_latent_shape
    from aiprod_recipes.specio import load_spec
    from aiprod_recipes.training.lora import FULL_FORMAT, weights_format

    spec = load_spec(args.file)
    ev = spec.eval
    width, height, frames = (_pick(args.width, ev.bucket.width), _pick(args.height,
                             ev.bucket.height), _pick(args.frames, ev.bucket.frames))
    video_latent_shape(frames, height, width)
    fps = float(_pick(args.fps, spec.ingest.fps))
    guidance = Guidance.from_eval(ev, cfg_scale=args.cfg, stg_scale=args.stg)
    adapters = [parse_adapter_arg(a) for a in args.adapter]
    for a in adapters:
        if not a.path.is_file():
            raise ValueError(f"--adapter {a.path}: no such file")
        if weights_format(a.path) == FULL_FORMAT:
            raise ValueError(f"--adapter {a.path}: these are full fine-tune weights; pass "
                             "them with --transformer")
    paths = model_paths(spec)
    negative = _pick(args.negative_prompt, ev.negative_prompt)
    prompt, neg = encode_prompts(spec.model, paths, spec.text_encoder, [args.prompt, negative])
    want = {"transformer", "embeddings_processor"} | DECODERS
    if args.image is not None or args.reference is not None:
        want.add("video_encoder")
    base_fp = model_fingerprint(paths)
    fusions = [FuseWhileLoading(a.path, a.strength) for a in adapters]
    for fusion in fusions:
        check_base(fusion.meta, base_fp, fusion.path, strict=False)
    hooks = [*_full_weights(args.transformer, paths.checkpoint), *fusions]
    options = replace(load_options(spec), state_hooks=tuple(hooks))
    components = load_model(spec.model, paths, want, options)
    for hook in hooks:
        hook.check_used()
    swap_blocks(components.transformer, spec.memory.blocks_to_swap)
    extra: dict[str, object] = {}
    if args.image is not None:
        extra["image_latent"] = encode_image(components.video_encoder, _read_image(args.image),
                                             width, height)
    if args.reference is not None:
        extra["reference"] = _reference_latent(spec, components.video_encoder, args.reference,
                                               width, height, frames, fps, args.reference_canny)
        extra["reference_downscale"] = spec.reference.downscale
    request = Request(prompt=prompt, negative=neg, width=width, height=height, frames=frames,
                      fps=fps, steps=int(_pick(args.steps, ev.steps)),
                      seed=int(_pick(args.seed, ev.seed)), guidance=guidance,
                      with_audio=not args.no_audio, **extra)
    try:
        generate(components, request, args.out, progress=True)
    finally:
        free(*vars(components).values())
    return args.out


def cmd_sample(args: argparse.Namespace) -> int:
    """Generate one sample; 0 on success, 1 with a message on a bad input or missing file."""
    try:
        out = _run(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    print(f"wrote {out}")
    return 0
