"""``sample`` and the loader honour quant.base and memory.blocks_to_swap: adapters fuse while
the weights load (before quantization), and block swap never changes the video."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aiprod_recipes.inference.adapters import FuseWhileLoading, fuse_adapter
from aiprod_recipes.inference.cli import cmd_sample
from aiprod_recipes.model.loader import LoadOptions, load_components
from aiprod_recipes.model.quant import quantize_base, quantized_linears
from aiprod_recipes.runtime import run_stage
from aiprod_recipes.training.lora import AdapterMeta, safetensors_bytes
from tests.conftest import write_spec
from tests.model_fixtures import tiny_model_paths
from tests.test_inference_cli import SMALL, make_adapter, parse


def _transformer(options: LoadOptions | None = None) -> torch.nn.Module:
    paths = tiny_model_paths()
    return load_components(paths.checkpoint, None, {"transformer"}, "cpu", torch.float32,
                           options).transformer


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("quant", ["none", "int8"])
def test_fusing_while_loading_equals_fusing_then_quantizing(tmp_path: Path, quant: str) -> None:
    path = make_adapter(tmp_path / "a.safetensors", 0.1)
    fusion = FuseWhileLoading(path, 0.7)
    loaded = _transformer(LoadOptions(quant=quant, state_hooks=(fusion,)))
    fusion.check_used()
    expected = _transformer()
    fuse_adapter(expected, path, 0.7)
    quantize_base(expected, quant)
    assert _same(loaded, expected)
    assert bool(quantized_linears(loaded)) == (quant != "none")


def test_an_adapter_for_another_model_is_reported(tmp_path: Path) -> None:
    """A target the tiny model does not have (it has two blocks) is never fused."""
    target = "diffusion_model.transformer_blocks.9.attn1.to_q"
    meta = AdapterMeta(2, 2.0, ("to_q",), "text_to_video", "x", "h")
    path = tmp_path / "other.safetensors"
    path.write_bytes(safetensors_bytes({f"{target}.lora_A.weight": torch.zeros(2, 8),
                                        f"{target}.lora_B.weight": torch.zeros(8, 2)},
                                       meta.header()))
    fusion = FuseWhileLoading(path)
    _transformer(LoadOptions(state_hooks=(fusion,)))
    with pytest.raises(ValueError, match="not linear layers of this model"):
        fusion.check_used()


def _sample(project: Path, out: str, adapter: Path, **sections: dict) -> bytes:
    write_spec(project, data={"raw_dir": "raw"}, **sections)
    args = parse(["--prompt", "a red ball", "--adapter", f"{adapter}:0.8", "--seed", "3",
                  "--out", out, *SMALL])
    assert cmd_sample(args) == 0
    return Path(out).read_bytes()


@pytest.mark.slow
def test_sample_honours_quant_and_block_swap_changes_nothing(project: Path) -> None:
    write_spec(project, data={"raw_dir": "raw"})
    run_stage("base")
    adapter = make_adapter(project / "a.safetensors", 0.05)
    int8 = _sample(project, "q.mp4", adapter, quant={"base": "int8"})
    swapped = _sample(project, "qs.mp4", adapter, quant={"base": "int8"},
                      memory={"blocks_to_swap": 1})
    plain = _sample(project, "p.mp4", adapter)
    assert swapped == int8
    assert plain != int8


def test_sample_errors_name_the_key(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_spec(project, data={"raw_dir": "raw"}, memory={"blocks_to_swap": 2})
    run_stage("base")
    assert cmd_sample(parse(["--prompt", "x", "--out", "o.mp4", *SMALL])) == 1
    assert "memory.blocks_to_swap = 2" in capsys.readouterr().err
    write_spec(project, data={"raw_dir": "raw"}, text_encoder={"load_in_8bit": True})
    assert cmd_sample(parse(["--prompt", "x", "--out", "o.mp4", *SMALL])) == 1
    assert "text_encoder.load_in_8bit = true needs a CUDA GPU" in capsys.readouterr().err

