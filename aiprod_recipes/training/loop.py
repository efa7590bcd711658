"""The training loop as small functions: setup, one optimizer step, the run, the hooks.

``setup`` turns a loaded transformer into a trainable one (LoRA or full, optionally over a
quantized base) with its optimizer, schedule, Accelerator and generators. ``train_step``
does one optimizer step over ``gradient_accumulation_steps`` micro-batches. ``run`` loops,
resumes from a compatible checkpoint, logs and checkpoints through hooks. The train stage
owns data loading (a function from micro-batch index to ``Batch``: indexing by position,
not by iterator, makes a resumed run read exactly the batches the interrupted one would
have) and the output files.

A non-finite loss or gradient norm stops the run with an error naming the step, before
the optimizer touches the weights, so the last checkpoint on disk is a good one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from aiprod_recipes.model.offload import BlockSwap
from aiprod_recipes.model.quant import quantize_base
from aiprod_recipes.spec import Flow, Lora, Memory, Optim, Quant, Spec, StrategyConfig, Train
from aiprod_recipes.training.checkpoint import (
    capture,
    load_if_compatible,
    restore,
    save_checkpoint,
)
from aiprod_recipes.training.compile import DEFAULT_BACKEND
from aiprod_recipes.training.flow import bucket_losses
from aiprod_recipes.training.forward import Batch, ContextCache, tokenize
from aiprod_recipes.training.lora import add_lora, make_full_trainable, trainable_parameters
from aiprod_recipes.training.objective import Generators, Losses, batch_losses, make_generators
from aiprod_recipes.training.optim import build_optimizer, build_scheduler, clip_gradients
from aiprod_recipes.training.placement import place
from aiprod_recipes.training.strategies import Strategy, strategy_for

__all__ = [
    "LogHook",
    "NonFiniteLoss",
    "Sections",
    "TrainState",
    "run",
    "save_state",
    "setup",
    "train_step",
    "try_resume",
]

LogHook = Callable[[int, dict[str, float]], None]
BatchFn = Callable[[int], Batch]
StepHook = Callable[["TrainState"], None]


class NonFiniteLoss(RuntimeError):
    """The loss or gradient norm became NaN or infinite."""


@dataclass(frozen=True)
class Sections:
    """The spec sections that shape training (and only those)."""

    strategy: StrategyConfig
    lora: Lora
    optim: Optim
    train: Train
    flow: Flow
    quant: Quant
    memory: Memory = field(default_factory=Memory)
    """Runtime placement only (block swap): never part of what shapes the result."""

    @staticmethod
    def from_spec(spec: Spec) -> Sections:
        return Sections(spec.strategy, spec.lora, spec.optim, spec.train, spec.flow, spec.quant,
                        spec.memory)


@dataclass
class TrainState:
    """Everything the loop mutates, in one place."""

    model: torch.nn.Module
    processor: torch.nn.Module
    params: dict[str, torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    accelerator: Accelerator
    generators: Generators
    sections: Sections
    strategy: Strategy
    resume_key: str
    """Checkpoints are resumed only by a run with this key (see ``checkpoint``)."""
    contexts: ContextCache
    step: int = 0
    swap: BlockSwap | None = None
    """The block swap of ``model`` (``memory.blocks_to_swap``), if any."""


def _prepare_model(model: torch.nn.Module, s: Sections) -> torch.nn.Module:
    if s.train.mode == "lora":
        add_lora(model, s.lora, s.train.seed)
        quantize_base(model, s.quant.base)
    else:
        if s.quant.base != "none":
            raise ValueError("quant.base needs train.mode = 'lora' (a quantized base cannot train)")
        make_full_trainable(model)
    if hasattr(model, "set_gradient_checkpointing"):
        model.set_gradient_checkpointing(s.train.gradient_checkpointing)
    elif s.train.gradient_checkpointing:
        raise ValueError(
            "train.gradient_checkpointing: this transformer has no checkpointing switch")
    return model.train()


def setup(
    transformer: torch.nn.Module,
    processor: torch.nn.Module,
    sections: Sections,
    resume_key: str,
    device: str | torch.device = "cpu",
    compile_backend: str = DEFAULT_BACKEND,
    log_with: Sequence[str] = (),
    project_config: Any = None,
    init_lora: Callable[[torch.nn.Module], Any] | None = None,
) -> TrainState:
    """Make ``transformer`` trainable as the sections say; build optimizer, schedule, RNGs.

    One process by default (Accelerator's single-device state). The Accelerator places the
    model and runs backward (DDP under a multi-process config); mixed precision is done
    with an explicit autocast in the step (so one process can hold runs with different
    precisions, e.g. in tests). Block swap, ``train.compile`` (with ``compile_backend``) and
    FSDP are set up by ``placement.place`` once the LoRA and the quantized base are in place.
    ``log_with`` names accelerate trackers (``training.trackers``), ``project_config`` where
    they write. ``init_lora(model)`` fills the freshly added LoRA layers before the model is
    placed (``lora.init_from``).
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is not None and "LOCAL_RANK" not in os.environ:
        # One process on a chosen GPU: accelerate places models on the current CUDA device.
        torch.cuda.set_device(device)
    accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision="no",
                              log_with=list(log_with) or None, project_config=project_config)
    s = sections
    prepared = _prepare_model(transformer, s)
    if init_lora is not None:
        init_lora(prepared)
    placed = place(prepared, s.train, s.quant, s.memory, accelerator, compile_backend)
    model = placed.model
    processor = processor.to(accelerator.device).eval().requires_grad_(False)
    params = trainable_parameters(model)
    optimizer = build_optimizer(params.values(), s.optim)
    scheduler = build_scheduler(optimizer, s.optim, s.train.steps)
    if not placed.sharded:
        model, optimizer = accelerator.prepare(model, optimizer)
    return TrainState(model, processor, params, optimizer, scheduler, accelerator,
                      make_generators(s.train.seed), s, strategy_for(s.strategy), resume_key,
                      ContextCache(processor), swap=placed.swap)


def try_resume(state: TrainState, root: Path) -> bool:
    """Continue from the checkpoint under ``root`` if it was written by this configuration."""
    snap = load_if_compatible(root, state.resume_key)
    if snap is None:
        return False
    restore(snap, state.params, state.optimizer, state.scheduler, state.generators.as_dict())
    state.step = snap.step
    return True


def save_state(state: TrainState, root: Path) -> Path | None:
    """Write a resumable checkpoint of ``state`` (atomic). Every process calls this (sharded
    weights are gathered); the main one writes and gets the folder."""
    snap = capture(state.step, state.resume_key, state.params, state.optimizer,
                   state.scheduler, state.generators.as_dict(),
                   keep=state.accelerator.is_main_process)
    return None if snap is None else save_checkpoint(root, snap)


def _autocast(state: TrainState) -> contextlib.AbstractContextManager:
    if state.sections.train.mixed_precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=state.accelerator.device.type, dtype=torch.bfloat16)


def _micro_losses(state: TrainState, batch: Batch) -> Losses:
    s = state.sections
    context = state.contexts(batch.text)
    tokens = tokenize(batch.to(state.accelerator.device), state.strategy.with_audio)
    with _autocast(state):
        return batch_losses(state.model, tokens, context, state.strategy, s.flow,
                            state.generators)




def _check_finite(value: float, what: str, step: int) -> None:
    if not torch.isfinite(torch.tensor(value)):
        raise NonFiniteLoss(
            f"{what} is {value} at step {step + 1}: training stopped before the optimizer "
            f"step; the last checkpoint on disk (step <= {step}) is untouched"
        )


def _metrics(losses: list[Losses], lr: float, grad_norm: float) -> dict[str, float]:
    n = len(losses)
    out = {"loss": sum(x.total.item() for x in losses) / n,
           "loss_video": sum(x.video.item() for x in losses) / n,
           "lr": lr, "grad_norm": grad_norm}
    if losses[0].audio is not None:
        out["loss_audio"] = sum(x.audio.item() for x in losses) / n
    levels = torch.cat([x.video_levels for x in losses])
    out.update(bucket_losses(levels, torch.cat([x.video_per_sample for x in losses]),
                             "loss_video"))
    if losses[0].audio_levels is not None:
        out.update(bucket_losses(torch.cat([x.audio_levels for x in losses]),
                                 torch.cat([x.audio_per_sample for x in losses]), "loss_audio"))
    return out


def train_step(state: TrainState, micro_batches: list[Batch]) -> dict[str, float]:
    """One optimizer step over ``micro_batches`` (gradient accumulation); returns metrics."""
    accum = len(micro_batches)
    state.optimizer.zero_grad(set_to_none=True)
    losses = []
    for batch in micro_batches:
        result = _micro_losses(state, batch)
        _check_finite(result.total.item(), "the loss", state.step)
        state.accelerator.backward(result.total / accum)
        losses.append(result)
    grad_norm = clip_gradients(state.params.values(), state.sections.optim.max_grad_norm)
    _check_finite(grad_norm, "the gradient norm", state.step)
    lr = float(state.scheduler.get_last_lr()[0])
    state.optimizer.step()
    state.scheduler.step()
    state.step += 1
    return _metrics(losses, lr, grad_norm)


def run(
    state: TrainState,
    batch_at: BatchFn,
    log: LogHook | None = None,
    checkpoint_root: Path | None = None,
    stop_after: int | None = None,
    resume: bool = True,
    on_step: StepHook | None = None,
    on_checkpoint: StepHook | None = None,
) -> TrainState:
    """Train from ``state.step`` to ``train.steps`` (or ``stop_after`` steps in total).

    ``batch_at(i)`` is micro-batch number i of the run. With ``checkpoint_root`` a
    compatible checkpoint there is resumed first and a new one is written every
    ``train.checkpoint_every`` steps. In every process, ``on_step`` runs after each step's
    log and before its checkpoint (what it writes is then covered by that checkpoint), and
    ``on_checkpoint`` after a checkpoint is written.
    """
    t = state.sections.train
    if checkpoint_root is not None and resume:
        try_resume(state, checkpoint_root)
    end = t.steps if stop_after is None else min(t.steps, stop_after)
    accum = t.gradient_accumulation_steps
    while state.step < end:
        first = state.step * accum
        metrics = train_step(state, [batch_at(first + k) for k in range(accum)])
        if log is not None and (state.step % t.log_every == 0 or state.step == t.steps):
            log(state.step, metrics)
        if on_step is not None:
            on_step(state)
        if (checkpoint_root is not None and t.checkpoint_every
                and state.step % t.checkpoint_every == 0):
            save_state(state, checkpoint_root)
            state.accelerator.wait_for_everyone()
            if on_checkpoint is not None:
                on_checkpoint(state)
    return state
