"""FLOPs of one training step, counted on the layers of the meta-built transformer.

The usual ``6 N T`` rule (forward 2, input gradients 2, weight gradients 2 per parameter
and token) assumes every weight trains. A LoRA step computes input gradients through the
frozen weights but weight gradients only for the adapters, so each linear is counted with
the tokens that actually pass through it:

- forward: 2 x in x out per token; input gradients the same again; weight gradients the
  same again only where the weight trains (the adapters under LoRA, everything in a full
  fine-tune); a LoRA adapter adds 2 x rank x (in + out) per token to each pass;
- attention: 4 x Tq x Tk x width forward (scores and values) and twice that backward;
- gradient checkpointing: the blocks' forward once more (recomputed in the backward).

Tokens per linear follow the block's wiring: video self-attention, feed-forward and the
query side of text and audio-to-video attention see the video tokens; the key/value side
of text attention sees the text tokens; and so on for audio. Timestep modulation runs per
token (LTX-2 has a noise level per token); the audio/video cross-modulation per sample.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiprod_recipes.planner.params import Inventory, Linear
from aiprod_recipes.planner.workload import Workload

__all__ = ["StepFlops", "step_flops"]

_KV = (".to_k", ".to_v")


def _side(local: str, module: str) -> str:
    """"q" or "kv": which side of the attention ``local`` (a linear inside ``module``) is."""
    rest = local[len(module):]
    return "kv" if rest.startswith(_KV) else "q"


_ATTENTION: dict[str, tuple[str, str]] = {
    # module: (query tokens, key/value tokens)
    "attn1": ("video", "video"),
    "attn2": ("video", "text"),
    "audio_attn1": ("audio", "audio"),
    "audio_attn2": ("audio", "text"),
    "audio_to_video_attn": ("video", "audio"),
    "video_to_audio_attn": ("audio", "video"),
}


_AUDIO_ONLY = ("audio_", "video_to_audio_attn", "av_ca_", "scale_shift_table_a2v_ca_")


def reached_without_audio(name: str) -> bool:
    """Whether a parameter (dotted name) takes part in a step without audio tokens: the
    audio stream and the audio/video cross-attention are skipped, so they get no gradient."""
    local = name.split(".", 2)[2] if name.startswith("transformer_blocks.") else name
    return not local.startswith(_AUDIO_ONLY)


def token_kind(linear: Linear) -> str:
    """Which tokens pass through ``linear``: video, audio, text or sample."""
    local = linear.local
    if linear.block is not None:
        module = local.split(".", 1)[0]
        if module in _ATTENTION:
            query, keys = _ATTENTION[module]
            return keys if _side(local, module) == "kv" else query
        return "audio" if module.startswith("audio") else "video"
    if local.startswith(("av_ca_", "prompt_adaln", "audio_prompt_adaln")):
        return "sample"
    if local.startswith(("caption_projection", "audio_caption_projection")):
        return "text"
    return "audio" if local.startswith("audio") else "video"


@dataclass(frozen=True)
class StepFlops:
    """FLOPs of one optimizer step, and the part that is recomputation."""

    total: float
    recompute: float

    @property
    def model(self) -> float:
        """Without the recomputation of gradient checkpointing."""
        return self.total - self.recompute


def _tokens(load: Workload) -> dict[str, int]:
    return {"video": load.video_total, "audio": load.audio, "text": load.text, "sample": 1}


def _attention_flops(inv: Inventory, load: Workload) -> float:
    """Forward FLOPs of every attention's scores and weighted sums, per sample."""
    tokens = _tokens(load)
    widths = {lin.local.split(".", 1)[0]: lin.out_features for lin in inv.linears
              if lin.block == 0 and lin.local.endswith(".to_q")}
    per_block = 0.0
    for module, (query, keys) in _ATTENTION.items():
        if module in widths and tokens[query] and tokens[keys]:
            per_block += 4.0 * tokens[query] * tokens[keys] * widths[module]
    return per_block * inv.num_layers


def step_flops(inv: Inventory, load: Workload, lora_rank: int | None,
               lora_targets: tuple[Linear, ...], checkpointing: bool,
               accumulation: int) -> StepFlops:
    """FLOPs of one optimizer step (``accumulation`` micro-batches of ``load``)."""
    tokens = _tokens(load)
    targeted = {lin.name for lin in lora_targets}
    forward = blocks_forward = backward = 0.0
    for lin in inv.linears:
        n = tokens[token_kind(lin)]
        base = 2.0 * lin.weights * n
        adapter = 2.0 * lora_rank * (lin.in_features + lin.out_features) * n if (
            lora_rank is not None and lin.name in targeted) else 0.0
        weight_grads = base if lora_rank is None else adapter
        forward += base + adapter
        backward += base + adapter + weight_grads
        if lin.block is not None:
            blocks_forward += base + adapter
    attention = _attention_flops(inv, load)
    forward += attention
    backward += 2.0 * attention
    recompute = blocks_forward + attention if checkpointing else 0.0
    scale = load.batch_size * accumulation
    return StepFlops((forward + backward + recompute) * scale, recompute * scale)
