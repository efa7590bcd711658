"""The activation model: bytes a training step adds on top of the resident weights.

What autograd keeps for the backward pass depends on every detail of the block code
(which tensors ltx-core's block saves, which linears carry a LoRA and so keep their input,
what peft and autocast cast, what quanto's int8 matmul keeps, what gradient checkpointing
drops), so the planner does not restate those details: it measures them on the real block
code, shrunk, and scales the result up by the laws that are exact for this architecture.

A probe is the spec's transformer with the same heads and the head widths cut to ``k`` /
``g`` of the real ones (``g`` = the gcd of the video and audio head widths, so both
streams keep their ratio), two blocks, made trainable exactly as the train stage does
(LoRA, int8 base, full), running one real training micro-step (``objective.batch_losses``
and backward, in the spec's precision) on a few tokens, with its peak measured by
``measure.LiveTensorBytes`` and, through forward hooks, what the second block adds (what
every further block adds). Each tensor a step creates is proportional to one token count
(video, audio or text; attention is flash-style, so nothing is quadratic in tokens) or to
none, and to the width or not. So the peak of an L-block model is ``c0 + cv Tv + ca Ta +
ct Tt``, with each coefficient ``peak2 + (L - 2) x per_block`` and both linear in ``k``:
four token mixes (each count doubled in turn) at two widths fix it, read off at the real
width and depth. The widths are the widest the probe allows (``PROBE_VIDEO_WIDTH``): on a
too narrow model the fixed 128-channel latent and loss tensors would outweigh a block and
the peak would fall elsewhere in the step than on the real model. Gradients are dropped as
they arrive (the planner counts them apart).

Planning for a CUDA device, autocast's float32 policy for ``rms_norm`` (CUDA runs it in
float32, the CPU in bfloat16) is applied during the probes, so norms and what follows them
are float32 as on the GPU. fp8 weights are probed as int8 (the same per-layer saves).
``tests/test_planner.py`` checks the model against the real peak of the tiny model's
training step at two sizes.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aiprod_recipes.planner.configs import ModelConfig
from aiprod_recipes.planner.workload import Workload
from aiprod_recipes.spec import Lora, Spec

__all__ = ["ActivationModel", "Regime", "activation_model"]

PROBE_VIDEO_WIDTH = 512
"""Widest video stream of a probe. Probes must not be so narrow that the fixed 128-channel
latent and loss tensors outweigh a block (the peak would then fall elsewhere in the step
than on the real model), nor so wide that they cost time."""
PROBE_DEPTH = 2
"""Blocks of a probe; what the last one adds is what every further block adds."""
BASE_TOKENS = (96, 12, 16)
"""(video, audio, text) tokens of the base probe; each is doubled in turn."""


@dataclass(frozen=True)
class Regime:
    """Everything besides the config and the tokens that shapes the step's activations."""

    dtype: str
    autocast: bool
    device: str
    lora: tuple[int, float, float, tuple[str, ...]] | None
    """(rank, alpha, dropout, target modules); None: full fine-tune."""
    quant: str
    with_audio: bool

    @staticmethod
    def from_spec(spec: Spec, device: str) -> Regime:
        lora = None
        if spec.train.mode == "lora":
            lo = spec.lora
            lora = (lo.rank, lo.alpha, lo.dropout, tuple(lo.target_modules))
        return Regime(spec.model.dtype, spec.train.mixed_precision == "bf16", device, lora,
                      spec.quant.base if lora is not None else "none",
                      spec.strategy.with_audio)


@dataclass(frozen=True)
class Coefficients:
    """Peak bytes = base + per_video x Tv + per_audio x Ta + per_text x Tt (per micro-batch)."""

    base: float
    per_video: float
    per_audio: float
    per_text: float

    def bytes(self, load: Workload) -> int:
        b = load.batch_size
        total = (self.base + b * (self.per_video * load.video_total + self.per_audio * load.audio
                                  + self.per_text * load.text))
        return max(0, round(total))


@dataclass(frozen=True)
class ActivationModel:
    """Activation bytes of a step, without and with gradient checkpointing."""

    plain: Coefficients
    checkpointed: Coefficients

    def bytes(self, load: Workload, checkpointing: bool) -> int:
        return (self.checkpointed if checkpointing else self.plain).bytes(load)


def _narrow(config: dict[str, Any], k: int, layers: int) -> dict[str, Any]:
    """``config`` with head widths (and the cross-attention widths with them) scaled to ``k``."""
    t = dict(config["transformer"])
    g = math.gcd(t["attention_head_dim"], t["audio_attention_head_dim"])
    scale = k / g
    t["attention_head_dim"] = t["attention_head_dim"] // g * k
    t["audio_attention_head_dim"] = t["audio_attention_head_dim"] // g * k
    for key in ("cross_attention_dim", "audio_cross_attention_dim"):
        t[key] = max(1, round(t[key] * scale))
    t["num_layers"] = layers
    return {**config, "transformer": t}


def real_width(config: ModelConfig) -> int:
    t = config.transformer
    return math.gcd(t["attention_head_dim"], t["audio_attention_head_dim"])


def probe_widths(config: ModelConfig) -> tuple[int, int]:
    """Two widths ``k`` (the second twice the first): the widest power of two that keeps
    the video stream within ``PROBE_VIDEO_WIDTH`` and does not exceed the real width."""
    t = config.transformer
    k_real = real_width(config)
    per_k = t["num_attention_heads"] * t["attention_head_dim"] // k_real
    k = 1
    while 2 * k <= k_real and 2 * k * per_k <= PROBE_VIDEO_WIDTH:
        k *= 2
    return (k // 2, k) if k > 1 else (1, 2)


@contextlib.contextmanager
def _cuda_autocast_norms() -> Iterator[None]:
    """Run ``rms_norm`` under CPU autocast as CUDA autocast does: in float32."""
    import torch
    import torch.nn.functional as F

    original = F.rms_norm

    def rms_norm(x: Any, shape: Any, weight: Any = None, eps: Any = None) -> Any:
        if not torch.is_autocast_enabled("cpu"):
            return original(x, shape, weight, eps)
        with torch.autocast("cpu", enabled=False):
            return original(x.float(), shape, None if weight is None else weight.float(), eps)

    F.rms_norm = rms_norm
    try:
        yield
    finally:
        F.rms_norm = original


def _probe_model(config: dict[str, Any], regime: Regime) -> Any:
    import torch
    from ltx_core.model.transformer.model_configurator import LTXModelConfigurator

    from aiprod_recipes.model.quant import quantize_base
    from aiprod_recipes.training.lora import add_lora, make_full_trainable

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LTXModelConfigurator.from_config(config).to_empty(device="cpu")
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.02)
    model = model.to(getattr(torch, regime.dtype))
    if regime.lora is None:
        make_full_trainable(model)
    else:
        rank, alpha, dropout, targets = regime.lora
        add_lora(model, Lora(rank=rank, alpha=alpha, dropout=dropout,
                             target_modules=list(targets)), 0)
        quantize_base(model, "int8" if regime.quant == "fp8" else regime.quant)
    for p in model.parameters():
        if p.requires_grad:
            p.register_post_accumulate_grad_hook(_drop_grad)
    return model.train()


def _drop_grad(param: Any) -> None:
    param.grad = None


def _step(model: Any, config: dict[str, Any], regime: Regime, tokens: tuple[int, int, int]
          ) -> Callable[[], None]:
    """One micro-step on synthetic tokens, as the train stage runs it."""
    import torch

    from aiprod_recipes.model.text import TextContext
    from aiprod_recipes.spec import Flow, TextToVideo
    from aiprod_recipes.training.forward import Tokens, audio_tokens, video_tokens
    from aiprod_recipes.training.objective import batch_losses, make_generators
    from aiprod_recipes.training.strategies import strategy_for

    video_n, audio_n, text_n = tokens
    t = config["transformer"]
    widths = (t["caption_channels"], t["caption_channels"])
    if t.get("caption_proj_before_connector"):
        widths = (t["num_attention_heads"] * t["attention_head_dim"],
                  t["audio_num_attention_heads"] * t["audio_attention_head_dim"])
    dtype = getattr(torch, regime.dtype)

    def run() -> None:
        video, video_pos = video_tokens(torch.zeros(1, 128, 1, 1, video_n), 24.0)
        audio = audio_pos = None
        if regime.with_audio:
            audio, audio_pos = audio_tokens(torch.zeros(1, 8, audio_n, 16))
        batch = Tokens(video, video_pos, video_n, 0, video_n, audio, audio_pos)
        context = TextContext(video=torch.zeros(1, text_n, widths[0], dtype=dtype),
                              audio=torch.zeros(1, text_n, widths[1], dtype=dtype),
                              mask=torch.ones(1, text_n, dtype=torch.int64))
        precision = (torch.autocast("cpu", dtype=torch.bfloat16) if regime.autocast
                     else contextlib.nullcontext())
        with precision:
            strategy = strategy_for(TextToVideo(with_audio=regime.with_audio))
            losses = batch_losses(model, batch, context, strategy, Flow(), make_generators(0))
        losses.total.backward()

    return run


def _token_mixes(with_audio: bool) -> list[tuple[int, int, int]]:
    v, a, t = BASE_TOKENS
    a = a if with_audio else 0
    mixes = [(v, a, t), (2 * v, a, t), (v, 2 * a, t), (v, a, 2 * t)]
    return mixes if with_audio else [mixes[0], mixes[1], mixes[3]]


def _coefficients(values: list[float], with_audio: bool) -> Coefficients:
    """Split measurements at the token mixes into a constant and per-token slopes."""
    v, a, t = BASE_TOKENS
    base = values[0]
    per_video = (values[1] - base) / v
    per_audio = (values[2] - base) / a if with_audio else 0.0
    per_text = (values[-1] - base) / t
    zero = base - per_video * v - per_audio * (a if with_audio else 0) - per_text * t
    return Coefficients(zero, per_video, per_audio, per_text)


def _combine(a: Coefficients, b: Coefficients, wa: float, wb: float) -> Coefficients:
    return Coefficients(wa * a.base + wb * b.base, wa * a.per_video + wb * b.per_video,
                        wa * a.per_audio + wb * b.per_audio, wa * a.per_text + wb * b.per_text)


def _clamped(c: Coefficients) -> Coefficients:
    return Coefficients(c.base, max(0.0, c.per_video), max(0.0, c.per_audio),
                        max(0.0, c.per_text))


@dataclass(frozen=True)
class _Probe:
    """At one width: the peak of a ``PROBE_DEPTH``-block model and what one more block adds."""

    peak: Coefficients
    per_block: Coefficients

    def at(self, layers: int) -> Coefficients:
        return _combine(self.peak, self.per_block, 1.0, float(layers - PROBE_DEPTH))


def _measure(model: Any, narrow: dict[str, Any], regime: Regime, mix: tuple[int, int, int]
             ) -> tuple[int, int]:
    """(peak, live bytes the last block's forward added) of one micro-step."""
    from aiprod_recipes.planner.measure import LiveTensorBytes

    after: list[int] = []
    live = LiveTensorBytes()
    hooks = [block.register_forward_hook(lambda *_: after.append(live.current))
             for block in model.transformer_blocks]
    try:
        with live:
            _step(model, narrow, regime, mix)()
    finally:
        for hook in hooks:
            hook.remove()
    return live.peak, after[PROBE_DEPTH - 1] - after[PROBE_DEPTH - 2]


def _probe_all(config: ModelConfig, regime: Regime) -> dict[bool, dict[int, _Probe]]:
    import torch

    mixes = _token_mixes(regime.with_audio)
    found: dict[bool, dict[int, _Probe]] = {False: {}, True: {}}
    norms = (_cuda_autocast_norms() if regime.autocast and regime.device == "cuda"
             else contextlib.nullcontext())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with norms:
            for k in probe_widths(config):
                narrow = _narrow(config.config, k, PROBE_DEPTH)
                model = _probe_model(narrow, regime)
                for checkpointing in (False, True):
                    model.set_gradient_checkpointing(checkpointing)
                    runs = [_measure(model, narrow, regime, mix) for mix in mixes]
                    found[checkpointing][k] = _Probe(
                        _coefficients([float(p) for p, _ in runs], regime.with_audio),
                        _coefficients([float(d) for _, d in runs], regime.with_audio))
    finally:
        torch.set_num_threads(threads)
    return found


def _extrapolate(found: dict[int, _Probe], k: int, layers: int) -> Coefficients:
    """Linear in the width between the two probes, read off at the real width ``k``."""
    k1, k2 = sorted(found)
    x = (k - k1) / (k2 - k1)
    return _clamped(_combine(found[k1].at(layers), found[k2].at(layers), 1 - x, x))


_PROBES: dict[tuple[str, Regime], dict[bool, dict[int, _Probe]]] = {}


def activation_model(config: ModelConfig, regime: Regime) -> ActivationModel:
    """The calibrated activation model of ``config`` trained under ``regime``.

    Probes are kept per process for the config's block shape (not its depth) and regime.
    """
    shape = {k: v for k, v in config.transformer.items() if k != "num_layers"}
    key = (repr(sorted(shape.items())), regime)
    if key not in _PROBES:
        _PROBES[key] = _probe_all(config, regime)
    found = _PROBES[key]
    k, layers = real_width(config), config.num_layers
    return ActivationModel(_extrapolate(found[False], k, layers),
                           _extrapolate(found[True], k, layers))
