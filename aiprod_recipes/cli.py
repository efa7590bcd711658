"""``aiprod-recipes``: the command line.

Exit codes: 0 success, 1 a stage failed or a check found a difference, 2 a bad spec or
bad usage.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import sys
import threading
from pathlib import Path

import tomllib

from aiprod_recipes import recipes, render
from aiprod_recipes.inference.cli import add_sample_parser
from aiprod_recipes.registry import UnknownStage
from aiprod_recipes.specio import (
    DEFAULT_SPEC,
    InvalidSpec,
    decode_spec,
    json_schema,
    load_spec,
    spec_to_toml,
)

EXIT_FAILED = 1
EXIT_BAD_SPEC = 2


def _print_spec_errors(e: InvalidSpec) -> int:
    print(f"{e.path}: {len(e.errors)} error(s)", file=sys.stderr)
    for line in e.errors:
        print(f"  {e.path}: {line}", file=sys.stderr)
    return EXIT_BAD_SPEC


def cmd_validate(args: argparse.Namespace) -> int:
    load_spec(args.file)
    print(f"{args.file}: ok")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    print(spec_to_toml(load_spec(args.file)), end="")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2))
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    text = recipes.compose(args.recipe, args.overlay)
    dest = Path(args.file)
    if dest.exists() and not args.force:
        print(f"{dest} exists; use --force to overwrite it", file=sys.stderr)
        return EXIT_BAD_SPEC
    source = f"recipe {args.recipe}" + (f" + overlay {args.overlay}" if args.overlay else "")
    spec = decode_spec(tomllib.loads(text), source)
    dest.write_text(text, encoding="utf-8")
    written = render.write(spec)
    overlay = f" with overlay {args.overlay!r}" if args.overlay else ""
    print(f"wrote {dest} from recipe {args.recipe!r}{overlay} and re-rendered "
          f"{', '.join(map(str, written))}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    spec = load_spec(args.file)
    if args.check:
        stale = render.stale(spec)
        if not stale:
            print(f"{render.DVC_YAML} (and the Makefile's stage targets) are current")
            return 0
        print(f"{', '.join(map(str, stale))} differ(s) from the stage registry and "
              f"{args.file}: run `aiprod-recipes render`", file=sys.stderr)
        return EXIT_FAILED
    print(f"wrote {', '.join(map(str, render.write(spec)))}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from aiprod_recipes.runtime import StageFailed, run_stage

    try:
        run_stage(args.stage, args.file)
    except StageFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    from aiprod_recipes.inference.decode import DecodeError, decode_item

    try:
        out = decode_item(load_spec(args.file), args.clip, Path(args.out), args.stage)
    except DecodeError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_SPEC
    print(f"wrote {out}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from aiprod_recipes.inference.hub import HubError, push
    from aiprod_recipes.names import EVALUATE, METRICS_FILE, TRAIN, stage_dir

    spec = load_spec(args.file)
    metrics = stage_dir(EVALUATE) / METRICS_FILE
    try:
        url = push(Path(args.weights) if args.weights else stage_dir(TRAIN), args.repo_id,
                   args.token_env, trigger_word=spec.caption.trigger_word,
                   metrics_path=metrics if metrics.exists() else None,
                   private=not args.public)
    except (ValueError, FileNotFoundError, HubError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    print(f"pushed to {url}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from aiprod_recipes.inference.adapters import parse_adapter_arg
    from aiprod_recipes.inference.merge import merge
    from aiprod_recipes.model.runtime import model_paths

    base = model_paths(load_spec(args.file)).checkpoint
    adapters = [parse_adapter_arg(a) for a in args.adapter]
    try:
        for a in (*adapters, base):
            path = getattr(a, "path", a)
            if not Path(path).is_file():
                raise FileNotFoundError(f"{path}: no such file")
        changed = merge(base, adapters, Path(args.out))
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_FAILED
    print(f"wrote {args.out}: {base} with {len(args.adapter)} adapter(s) folded into "
          f"{changed} weight(s)")
    return 0


def cmd_setup_dvc(args: argparse.Namespace) -> int:
    from aiprod_recipes.dvc_bare_params import write_pth

    print(f"installed the bare `dvc exp run -S` hook: {write_pth()}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from aiprod_recipes.planner import report
    from aiprod_recipes.planner.configs import UnknownModel
    from aiprod_recipes.planner.estimate import PlanError

    spec = load_spec(args.file)
    try:
        plan = report.plan_for(spec, args.model, report.gpu_bytes(spec, args.gpu_memory))
    except (UnknownModel, PlanError, report.BadSize) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_SPEC
    render = report.render_json if args.json else report.render_text
    print(render(plan, args.file))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aiprod-recipes", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, func, help: str, spec_arg: bool = True) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=func)
        if spec_arg:
            sp.add_argument("--file", "-f", default=str(DEFAULT_SPEC), help="spec file")
        return sp

    v = add("validate", cmd_validate, "check a spec; print every error", spec_arg=False)
    v.add_argument("file", nargs="?", default=str(DEFAULT_SPEC))
    add("show", cmd_show, "print the resolved spec (defaults filled in)")
    add("schema", cmd_schema, "print the JSON Schema of the spec", spec_arg=False)
    i = add("init", cmd_init, "write params.toml from a recipe preset")
    i.add_argument("--recipe", "-r", default="tiny", help=f"one of: {', '.join(recipes.names())}")
    i.add_argument("--force", action="store_true", help="overwrite an existing spec file")
    i.add_argument("--overlay", "-o", default=None,
                   help="keys that replace the preset's: a TOML file, or one of: "
                        f"{', '.join(recipes.overlay_names())} (tiny-model: try the preset "
                        "on the tiny model first)")
    r = add("render", cmd_render, "write dvc.yaml from the stage registry")
    r.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml is stale")
    run = add("run", cmd_run, "run one pipeline stage (what dvc.yaml calls)")
    run.add_argument("stage")
    d = add("decode", cmd_decode, "decode a clip's stored latents to an mp4 (video + audio)")
    d.add_argument("clip", help="clip id (see data/stages/latents/manifest.jsonl)")
    d.add_argument("--out", "-o", default="decoded.mp4")
    d.add_argument("--stage", choices=["latents", "reference"], default="latents")
    add_sample_parser(sub)
    push = add("push", cmd_push, "upload the adapter (or full weights) with a model card to the "
               "Hugging Face Hub")
    push.add_argument("repo_id", help="e.g. alice/my-ltx2-lora")
    push.add_argument("--weights", help="adapter, kept checkpoint or full weights file "
                      "(default: the train stage's output)")
    push.add_argument("--token-env", default="HF_TOKEN", help="variable holding the token")
    push.add_argument("--public", action="store_true", help="create a public repo")
    pl = add("plan", cmd_plan, "estimate the GPU memory of the run the spec describes",
             spec_arg=False)
    pl.add_argument("file", nargs="?", default=str(DEFAULT_SPEC), help="spec file")
    pl.add_argument("--gpu-memory", help="GPU size, e.g. 24GiB, 80GB (default: this machine's "
                    "GPU, else 24GiB)")
    pl.add_argument("--model", help="plan a published model instead of model.source "
                    "(ltx2-19b)")
    pl.add_argument("--json", action="store_true", help="print one JSON object")
    m = add("merge", cmd_merge, "fold adapters into the base checkpoint: one single-file "
            "checkpoint that ltx-core loads")
    m.add_argument("--adapter", action="append", required=True, metavar="PATH[:STRENGTH]",
                   help="LoRA file to fold in, strength 1 by default; repeat for several")
    m.add_argument("--out", "-o", required=True, help="the merged .safetensors checkpoint")
    add("setup-dvc", cmd_setup_dvc, "make bare `dvc exp run -S key=value` target params.toml",
        spec_arg=False)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except InvalidSpec as e:
        return _print_spec_errors(e)
    except (UnknownStage, recipes.UnknownRecipe) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_SPEC


def entry() -> None:
    """The console script: ``main``, then an exit that skips tearing the interpreter down.

    A stage process holds torch and, for some stages, transformers and the model libraries;
    freeing their modules one by one at exit takes up to a second and a half, more than a
    stage's own work when it adds one clip, and DVC waits for it at every stage. By the time
    ``main`` returns, every output is written, closed and moved into place, so once the exit
    handlers have run and the standard streams are flushed the process can end at once.
    With a non-daemon thread still running (a tracker's uploader, say), the ordinary exit
    waits for it.
    """
    code = main()
    if any(not t.daemon and t is not threading.main_thread() for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        # a closed pipe (``| head``) or a closed stream has nothing left to flush into
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
