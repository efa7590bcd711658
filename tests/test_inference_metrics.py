"""The held-out loss: documented keys, the same noise for base and adapter, a zero adapter
changes nothing, conditioning strategies run."""

from __future__ import annotations

import math
from pathlib import Path

import msgspec
import pytest
import torch

from aiprod_recipes.inference.adapters import adapters_disabled, attach
from aiprod_recipes.inference.metrics import (
    ValClip,
    clip_generators,
    evaluate_losses,
    level_key,
)
from aiprod_recipes.model.loader import load_components
from aiprod_recipes.model.text import encode_captions
from aiprod_recipes.spec import ImageToVideo, Lora, Spec, VideoToVideo
from aiprod_recipes.training.forward import Batch
from aiprod_recipes.training.lora import (
    PEFT_ADAPTER_NAME,
    AdapterMeta,
    add_lora,
    lora_layers,
    save_adapter,
)
from tests.model_fixtures import tiny_components, tiny_model_paths  # noqa: F401

LEVELS = [0.25, 0.75]


def spec(**sections) -> Spec:
    base = Spec()
    ev = msgspec.structs.replace(base.eval, loss_levels=LEVELS, seed=3)
    return msgspec.structs.replace(base, eval=ev, **sections)


@pytest.fixture(scope="module")
def clips(tiny_components) -> list[ValClip]:  # noqa: F811
    c = tiny_components
    feats = encode_captions(c.text_encoder, c.embeddings_processor, ["a ball", "a dot"], 128)
    gen = torch.Generator().manual_seed(0)
    return [ValClip(f"clip{i}", Batch(video=torch.randn(1, 128, 2, 1, 2, generator=gen),
                                      text=[f], audio=torch.randn(1, 8, 9, 16, generator=gen),
                                      reference=torch.randn(1, 128, 2, 1, 2, generator=gen)))
            for i, f in enumerate(feats)]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Path]:
    """Adapter files on the tiny base: lora_B zero (True) or not (False)."""
    paths = tiny_model_paths()
    model = load_components(paths.checkpoint, None, {"transformer"}, "cpu",
                            torch.float32).transformer
    add_lora(model, Lora(rank=4, alpha=8.0), seed=1)
    meta = AdapterMeta(4, 8.0, tuple(Lora().target_modules), "text_to_video", "fp", "h")
    root = tmp_path_factory.mktemp("adapters")
    out = {}
    for zero_b in (True, False):
        with torch.no_grad():
            for layer in lora_layers(model).values():
                w = layer.lora_B[PEFT_ADAPTER_NAME].weight
                w.copy_(torch.zeros_like(w) if zero_b else torch.full_like(w, 0.02))
        out[zero_b] = save_adapter(model, root / f"zero_{zero_b}.safetensors", meta)
    return out


def adapted(path: Path):
    paths = tiny_model_paths()
    c = load_components(paths.checkpoint, None, {"transformer", "embeddings_processor"}, "cpu",
                        torch.float32)
    attach(c.transformer, path)
    return c


def test_keys_and_zero_adapter(clips, files) -> None:
    c = adapted(files[True])
    m = evaluate_losses(c.transformer, c.embeddings_processor, clips, spec())
    levels = [level_key(p, s) for p in ("loss_base", "loss_adapter") for s in LEVELS]
    assert levels == ["loss_base_level_0.25", "loss_base_level_0.75",
                      "loss_adapter_level_0.25", "loss_adapter_level_0.75"]
    assert set(m) == {"loss_base", "loss_adapter", "improvement", "num_val_clips", *levels}
    assert m["num_val_clips"] == 2 and m["improvement"] == 0.0
    assert all(m[level_key("loss_base", s)] == m[level_key("loss_adapter", s)] for s in LEVELS)
    assert m["loss_base"] == pytest.approx(sum(m[level_key("loss_base", s)] for s in LEVELS) / 2)


def test_adapter_changes_loss_reproducibly(clips, files) -> None:
    c = adapted(files[False])
    first = evaluate_losses(c.transformer, c.embeddings_processor, clips, spec())
    again = evaluate_losses(c.transformer, c.embeddings_processor, clips, spec())
    assert first == again
    assert first["loss_base"] != first["loss_adapter"]
    assert math.isfinite(first["improvement"])
    with adapters_disabled(c.transformer):
        assert all(layer.disable_adapters for layer in lora_layers(c.transformer).values())
    assert not any(layer.disable_adapters for layer in lora_layers(c.transformer).values())


@pytest.mark.parametrize("strategy", [ImageToVideo(), VideoToVideo(with_audio=False)])
def test_conditioning_strategies(strategy, clips, files) -> None:
    c = adapted(files[False])
    s = spec(strategy=strategy, reference=msgspec.structs.replace(Spec().reference,
                                                                  enabled=True))
    m = evaluate_losses(c.transformer, c.embeddings_processor, clips, s)
    assert m["loss_base"] != m["loss_adapter"] and math.isfinite(m["loss_adapter"])


def test_noise_depends_on_seed_clip_and_level_only() -> None:
    def noise(*key) -> torch.Tensor:
        return torch.randn(4, generator=clip_generators(*key).noise)

    assert torch.equal(noise(0, "a", 0.5), noise(0, "a", 0.5))
    assert not torch.equal(noise(0, "a", 0.5), noise(0, "b", 0.5))
    assert not torch.equal(noise(0, "a", 0.5), noise(0, "a", 0.3))
    assert not torch.equal(noise(0, "a", 0.5), noise(1, "a", 0.5))


def test_no_val_clips_gives_nan(files) -> None:
    c = adapted(files[True])
    m = evaluate_losses(c.transformer, c.embeddings_processor, [], spec())
    assert m["num_val_clips"] == 0 and math.isnan(m["loss_base"])
