"""FSDP (torch's fully_shard) on CPUs with gloo: the accelerate config's settings, what it
refuses, and a sharded run that checkpoints and resumes to the same weights."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from aiprod_recipes.model.errors import ModelSettingError
from aiprod_recipes.training.placement import place
from aiprod_recipes.training.sharding import fsdp_settings
from tests.conftest import BIN, REPO, free_port, shipped_fsdp_config
from tests.test_training_fixtures import fresh_model, sections


def test_settings_come_from_the_accelerate_launch_environment() -> None:
    assert fsdp_settings({}) is None
    on = {"ACCELERATE_USE_FSDP": "true"}
    full = fsdp_settings({**on, "FSDP_SHARDING_STRATEGY": "FULL_SHARD"})
    assert full is not None and full.reshard_after_forward and not full.offload_params
    grad_op = fsdp_settings({**on, "FSDP_SHARDING_STRATEGY": "SHARD_GRAD_OP",
                             "FSDP_OFFLOAD_PARAMS": "true"})
    assert grad_op is not None and not grad_op.reshard_after_forward and grad_op.offload_params
    v2 = fsdp_settings({**on, "FSDP_VERSION": "2", "FSDP_RESHARD_AFTER_FORWARD": "false"})
    assert v2 is not None and not v2.reshard_after_forward
    with pytest.raises(ValueError, match="HYBRID_SHARD"):
        fsdp_settings({**on, "FSDP_SHARDING_STRATEGY": "HYBRID_SHARD"})


@pytest.mark.parametrize(("kw", "key"), [({"blocks_to_swap": 1}, "memory.blocks_to_swap"),
                                         ({"quant": "int8"}, "quant.base")])
def test_fsdp_refuses_block_swap_and_a_quantized_base(
        kw: dict, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    s = sections(**kw)
    two = SimpleNamespace(num_processes=2, device=torch.device("cpu"))
    with pytest.raises(ModelSettingError, match=key.replace(".", r"\.")):
        place(fresh_model()[0], s.train, s.quant, s.memory, two, "inductor")  # type: ignore[arg-type]


RESUME = """\
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from aiprod_recipes.training.loop import run, setup
from aiprod_recipes.training.sharding import gathered
from tests.test_training_fixtures import STRATEGIES, batch_for, fresh_model, sections

root, out = Path(sys.argv[1]), Path(sys.argv[2])
torch.set_num_threads(1)


def train(checkpoints, stop_after=None, resume=False):
    model, processor = fresh_model()
    state = setup(model, processor, sections(STRATEGIES["text_to_video"], steps=4,
                                             checkpoint_every=2), "key", "cpu")
    assert type(state.model).__name__.startswith("FSDP"), type(state.model)
    rank = state.accelerator.process_index
    run(state, lambda i: batch_for("text_to_video", seed=2 * i + rank),
        checkpoint_root=checkpoints, stop_after=stop_after, resume=resume)
    return state


straight = gathered(train(root / "straight").params)
train(root / "resumed", stop_after=2)
resumed_state = train(root / "resumed", resume=True)
resumed = gathered(resumed_state.params)
if resumed_state.accelerator.is_main_process:
    save_file(straight, str(out / "straight.safetensors"))
    save_file(resumed, str(out / "resumed.safetensors"))
"""

@pytest.mark.slow
def test_sharded_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    (tmp_path / "fsdp.yaml").write_text(shipped_fsdp_config(free_port()))
    (tmp_path / "resume.py").write_text(RESUME)
    subprocess.run([str(BIN / "accelerate"), "launch", "--config_file",
                    str(tmp_path / "fsdp.yaml"), str(tmp_path / "resume.py"), str(tmp_path),
                    str(tmp_path)], check=True, cwd=REPO,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    straight = load_file(str(tmp_path / "straight.safetensors"))
    resumed = load_file(str(tmp_path / "resumed.safetensors"))
    assert straight.keys() == resumed.keys() and straight
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
