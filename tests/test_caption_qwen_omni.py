"""The Qwen2.5-Omni captioner end to end on a tiny random checkpoint built locally.

Both video paths run: transformers' video processor (it needs torchvision, the ``qwen``
extra) and the frame path used without torchvision; they make the same patch grid.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from aiprod_recipes.captioning.qwen_omni import (
    QWEN_OMNI_SYSTEM_PROMPT,
    QwenOmniError,
    load_from_spec,
    load_processor,
    load_qwen_omni,
    prepare_inputs,
    resolve_device,
)
from aiprod_recipes.spec import QwenOmniCaptioner
from tests.caption_fixtures import build_tiny_qwen_omni, tiny_media

INSTRUCTION = "Describe this clip in one sentence."


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen_omni(tmp_path_factory.mktemp("qwen_omni"))


VIDEO_PATHS = ["torchvision", "frames"]


def _processor(model_dir: Path, path: str):
    if path == "torchvision":
        pytest.importorskip("torchvision", reason="pip install -e '.[qwen]'")
    return load_processor(model_dir, torchvision=path == "torchvision")


@pytest.fixture(scope="module")
def loaded(model_dir: Path):
    return load_qwen_omni(model_dir, device="cpu", max_new_tokens=6)


@pytest.fixture(scope="module", params=VIDEO_PATHS)
def captioner(request: pytest.FixtureRequest, model_dir: Path, loaded):
    """The captioner with each video path's processor."""
    return dataclasses.replace(loaded, processor=_processor(model_dir, request.param))


def test_caption_with_audio_end_to_end(captioner) -> None:
    frames, audio = tiny_media(num_frames=4, seconds=1.0)
    text = captioner.caption(frames, audio, INSTRUCTION)
    assert isinstance(text, str) and text
    assert captioner.caption(frames, audio, INSTRUCTION) == text  # greedy: deterministic


def test_caption_without_audio(captioner) -> None:
    frames, _ = tiny_media(num_frames=3, seconds=1.0)
    assert captioner.caption(frames, None, INSTRUCTION, fps=3.0)


def test_weights_come_from_the_folder(model_dir: Path, captioner) -> None:
    saved = load_file(str(model_dir / "model.safetensors"))
    assert not any(k.startswith(("talker.", "token2wav.")) for k in saved)
    params = dict(captioner.model.named_parameters())
    for name in ("lm_head.weight", "model.embed_tokens.weight",
                 "visual.patch_embed.proj.weight", "audio_tower.conv1.weight"):
        torch.testing.assert_close(params[name], saved[f"thinker.{name}"])


def test_prompt_interleaves_video_and_audio(captioner) -> None:
    frames, audio = tiny_media(num_frames=4, seconds=1.0)
    inputs, with_audio = prepare_inputs(captioner.processor, frames, audio, INSTRUCTION)
    assert with_audio
    tok = captioner.processor.tokenizer
    ids = inputs["input_ids"][0].tolist()
    text = tok.decode(ids)
    assert QWEN_OMNI_SYSTEM_PROMPT in text and INSTRUCTION in text
    assert text.rstrip().endswith("<|im_start|>assistant")
    assert "<|vision_bos|><|audio_bos|><|VIDEO|>" in text
    t, h, w = inputs["video_grid_thw"][0].tolist()
    # 4 frames / temporal patch 2; 56 px frames scaled up to the Omni processor's smallest
    # video frame (128 * 28 * 28 px): 336 px / patch 14 = 24
    assert (t, h, w) == (2, 24, 24)
    assert ids.count(tok.convert_tokens_to_ids("<|VIDEO|>")) == t * h * w // 4
    assert ids.count(tok.convert_tokens_to_ids("<|AUDIO|>")) == 25  # 1 s at 25 tokens/s
    assert inputs["video_second_per_grid"][0].item() == pytest.approx(2 / 4.0)  # fps = 4/1 s


def test_prompt_without_audio_has_no_audio_tokens(captioner) -> None:
    frames, _ = tiny_media(num_frames=2)
    inputs, with_audio = prepare_inputs(captioner.processor, frames, None, INSTRUCTION)
    assert not with_audio and "input_features" not in inputs
    text = captioner.processor.tokenizer.decode(inputs["input_ids"][0])
    assert "<|AUDIO|>" not in text and "<|vision_bos|><|VIDEO|>" in text


@pytest.mark.parametrize("size", [56, 100, 336])
def test_both_video_paths_make_the_same_patches(model_dir: Path, size: int) -> None:
    with_torchvision, frames_path = (_processor(model_dir, path) for path in VIDEO_PATHS)
    frames, audio = tiny_media(num_frames=4, size=size)
    a, _ = prepare_inputs(with_torchvision, frames, audio, INSTRUCTION)
    b, _ = prepare_inputs(frames_path, frames, audio, INSTRUCTION)
    assert torch.equal(a["video_grid_thw"], b["video_grid_thw"])
    assert torch.equal(a["input_ids"], b["input_ids"])
    # the same pixels; frames scaled up differ by the two bicubic filters only
    tolerance = 1e-6 if size == 336 else 0.05
    torch.testing.assert_close(a["pixel_values_videos"], b["pixel_values_videos"],
                               atol=tolerance, rtol=0)


@pytest.mark.parametrize(
    ("frames", "match"),
    [
        (np.zeros((2, 8, 8), np.uint8), r"\[N, H, W, 3\]"),
        (np.zeros((2, 8, 8, 3), np.float32), "uint8"),
        (np.zeros((0, 8, 8, 3), np.uint8), "empty"),
    ],
)
def test_bad_frames_are_rejected(captioner, frames: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        prepare_inputs(captioner.processor, frames, None, INSTRUCTION)


def test_stereo_audio_is_rejected(captioner) -> None:
    frames, _ = tiny_media(num_frames=2)
    with pytest.raises(ValueError, match="mono"):
        prepare_inputs(captioner.processor, frames, np.zeros((2, 16000), np.float32), "x")


def test_load_from_spec_relative_dir_and_errors(model_dir: Path) -> None:
    spec = QwenOmniCaptioner(model_dir=model_dir.name, device="cpu", max_new_tokens=3)
    loaded = load_from_spec(spec, base_dir=model_dir.parent)
    assert loaded.max_new_tokens == 3 and loaded.device == "cpu"
    with pytest.raises(QwenOmniError, match=r"no config\.json"):
        load_qwen_omni(model_dir.parent / "missing")
    with pytest.raises(QwenOmniError, match="load_in_8bit needs a CUDA device"):
        load_qwen_omni(model_dir, load_in_8bit=True, device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only fallback")
def test_device_resolution_without_gpu() -> None:
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(QwenOmniError, match="no CUDA device"):
        resolve_device("cuda:0")


def test_caption_stage_with_the_local_model(project: Path, model_dir: Path) -> None:
    """The caption stage through the Qwen2.5-Omni backend: sampled frames plus sound of each
    scene clip in, a caption per clip out; a rerun reuses them without loading the model."""
    import shutil

    from aiprod_recipes.runtime import run_stage
    from aiprod_recipes.stages.caption import read_captions
    from tests.conftest import write_spec
    from tests.media_fixtures import SAMPLE_DIR

    shutil.copytree(model_dir, project / "qwen")
    shutil.copy(SAMPLE_DIR / "pulse.mp4", project / "raw")
    write_spec(project, data={"raw_dir": "raw"},
               caption={"backend": {"type": "qwen_omni", "model_dir": "qwen", "device": "cpu",
                                    "num_frames": 2, "max_new_tokens": 4}})
    run_stage("ingest")
    assert run_stage("caption") == {"captioned": 1, "reused": 0, "failed": 0, "missing": 0}
    (caption,) = read_captions(project / "data" / "stages" / "caption").values()
    assert caption.strip()
    assert run_stage("caption")["reused"] == 1
