"""``aiprod-recipes sample`` on the CPU: adapters with strengths, image-to-video, errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from aiprod_recipes.inference.adapters import fuse_adapter, parse_adapter_arg
from aiprod_recipes.inference.cli import add_sample_parser, cmd_sample
from aiprod_recipes.model.loader import load_components
from aiprod_recipes.runtime import run_stage
from aiprod_recipes.spec import Lora
from aiprod_recipes.training.lora import (
    PEFT_ADAPTER_NAME,
    AdapterMeta,
    add_lora,
    lora_layers,
    save_adapter,
)
from tests.conftest import write_spec
from tests.media_fixtures import SAMPLE_DIR
from tests.model_fixtures import tiny_model_paths

SMALL = ["--steps", "2", "--width", "32", "--height", "32", "--frames", "9"]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_sample_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["sample", *argv])


def make_adapter(path: Path, value: float) -> Path:
    paths = tiny_model_paths()
    model = load_components(paths.checkpoint, None, {"transformer"}, "cpu",
                            torch.float32).transformer
    add_lora(model, Lora(rank=2, alpha=2.0, target_modules=["to_q", "to_v"]), seed=0)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B[PEFT_ADAPTER_NAME].weight.fill_(value)
    meta = AdapterMeta(2, 2.0, ("to_q", "to_v"), "text_to_video", "other-base", "h")
    return save_adapter(model, path, meta)


def test_parse_adapter_arg() -> None:
    assert parse_adapter_arg("a/b.safetensors") == parse_adapter_arg("a/b.safetensors:1")
    arg = parse_adapter_arg("C:/x/lora.safetensors:0.5")
    assert (arg.path, arg.strength) == (Path("C:/x/lora.safetensors"), 0.5)
    assert parse_adapter_arg("dir:name.safetensors").path == Path("dir:name.safetensors")


def test_fuse_adds_scaled_update(tmp_path: Path) -> None:
    path = make_adapter(tmp_path / "a.safetensors", 0.1)
    paths = tiny_model_paths()
    model = load_components(paths.checkpoint, None, {"transformer"}, "cpu",
                            torch.float32).transformer
    name = "transformer_blocks.0.attn1.to_q"
    before = dict(model.named_modules())[name].weight.clone()
    fuse_adapter(model, path, 0.5)
    fuse_adapter(model, path, -0.5)
    after = dict(model.named_modules())[name].weight
    assert torch.allclose(before, after, atol=1e-6)
    fuse_adapter(model, path, 2.0)
    assert not torch.allclose(before, after)


def test_sample_command(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_spec(project, data={"raw_dir": "raw"})
    run_stage("base")
    a = make_adapter(project / "a.safetensors", 0.05)
    b = make_adapter(project / "b.safetensors", -0.02)
    image = np.zeros((40, 48, 3), np.uint8)
    image[:, :24] = (255, 0, 0)
    cv2.imwrite(str(project / "first.png"), image)
    args = parse(["--prompt", "a red ball", "--adapter", f"{a}:0.8", "--adapter", str(b),
                  "--image", "first.png", "--seed", "3", "--out", "out/s.mp4", *SMALL])
    assert cmd_sample(args) == 0
    assert "wrote out/s.mp4" in capsys.readouterr().out
    with av.open("out/s.mp4") as c:
        assert len(c.streams.video) == 1 and len(c.streams.audio) == 1
        assert sum(1 for _ in c.decode(video=0)) == 9


@pytest.mark.slow
def test_sample_command_reference(project: Path) -> None:
    write_spec(project, data={"raw_dir": "raw"})
    run_stage("base")
    args = parse(["--prompt", "edges", "--reference", str(SAMPLE_DIR / "pulse.mp4"),
                  "--reference-canny", "--cfg", "1", "--stg", "0", "--out", "r.mp4", *SMALL])
    assert cmd_sample(args) == 0
    with av.open("r.mp4") as c:
        assert sum(1 for _ in c.decode(video=0)) == 9


def test_sample_command_errors(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_spec(project, data={"raw_dir": "raw"})
    assert cmd_sample(parse(["--prompt", "x", "--adapter", "missing.safetensors:0.5",
                             "--out", "o.mp4"])) == 1
    assert "missing.safetensors: no such file" in capsys.readouterr().err
    assert cmd_sample(parse(["--prompt", "x", "--frames", "10", "--out", "o.mp4"])) == 1
    assert "8k + 1" in capsys.readouterr().err
