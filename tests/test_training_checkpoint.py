"""Resumable state without pickle: round trips, fingerprints, atomic swaps."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from aiprod_recipes.spec import Optim
from aiprod_recipes.training.checkpoint import (
    capture,
    load_if_compatible,
    restore,
    resume_key,
    save_checkpoint,
)
from aiprod_recipes.training.optim import build_optimizer, build_scheduler


def _objects(kind: str) -> tuple[dict, torch.optim.Optimizer, object, dict]:
    g = torch.Generator().manual_seed(0)
    params = {"w": torch.nn.Parameter(torch.randn(128, 64, generator=g)),
              "b": torch.nn.Parameter(torch.randn(8, generator=g))}
    optim = Optim(optimizer=kind, learning_rate=1e-2, scheduler="cosine", warmup_steps=2)
    opt = build_optimizer(params.values(), optim)
    sched = build_scheduler(opt, optim, 10)
    gens = {"noise": torch.Generator().manual_seed(5)}
    return params, opt, sched, gens


def _train(params: dict, opt: torch.optim.Optimizer, sched: object, gens: dict, n: int) -> None:
    for _ in range(n):
        for p in params.values():
            p.grad = torch.randn(p.shape, generator=gens["noise"])
        opt.step()
        sched.step()


@pytest.mark.parametrize("kind", ["adamw", "adamw8bit"])
def test_round_trip_continues_identically(tmp_path: Path, kind: str) -> None:
    params, opt, sched, gens = _objects(kind)
    _train(params, opt, sched, gens, 3)
    torch.manual_seed(11)
    random.seed(12)
    np.random.seed(13)
    save_checkpoint(tmp_path, capture(3, "fp", params, opt, sched, gens, {"live_step": 3}))
    expected_draws = (torch.rand(2), random.random(), np.random.rand())
    _train(params, opt, sched, gens, 2)
    expected = {k: v.detach().clone() for k, v in params.items()}

    params2, opt2, sched2, gens2 = _objects(kind)
    snap = load_if_compatible(tmp_path, "fp")
    assert snap is not None and snap.step == 3 and snap.extra == {"live_step": 3}
    restore(snap, params2, opt2, sched2, gens2)
    draws = (torch.rand(2), random.random(), np.random.rand())
    assert torch.equal(draws[0], expected_draws[0]) and draws[1:] == expected_draws[1:]
    _train(params2, opt2, sched2, gens2, 2)
    for k in expected:
        assert torch.equal(params2[k], expected[k])
    assert sched2.get_last_lr() == sched.get_last_lr()


def test_other_fingerprint_starts_fresh(tmp_path: Path) -> None:
    params, opt, sched, gens = _objects("adamw")
    save_checkpoint(tmp_path, capture(1, resume_key({"lora": {"rank": 8}}), params, opt,
                                      sched, gens))
    assert load_if_compatible(tmp_path, resume_key({"lora": {"rank": 16}})) is None
    assert load_if_compatible(tmp_path, resume_key({"lora": {"rank": 8}})) is not None
    assert load_if_compatible(tmp_path / "missing", "x") is None


def test_files_are_safetensors_and_json_only(tmp_path: Path) -> None:
    params, opt, sched, gens = _objects("adamw8bit")
    _train(params, opt, sched, gens, 1)
    folder = save_checkpoint(tmp_path, capture(1, "fp", params, opt, sched, gens))
    assert sorted(p.name for p in folder.iterdir()) == [
        "state.json", "state.safetensors", "trainable.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current"]


def test_interrupted_swap_falls_back_to_previous(tmp_path: Path) -> None:
    params, opt, sched, gens = _objects("adamw")
    save_checkpoint(tmp_path, capture(2, "fp", params, opt, sched, gens))
    shutil.move(tmp_path / "current", tmp_path / "previous")
    snap = load_if_compatible(tmp_path, "fp")
    assert snap is not None and snap.step == 2
    save_checkpoint(tmp_path, capture(4, "fp", params, opt, sched, gens))
    assert load_if_compatible(tmp_path, "fp").step == 4
    assert not (tmp_path / "previous").exists()
