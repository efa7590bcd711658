"""Local captions from Qwen2.5-Omni through transformers (text output only).

Only the *thinker* (audio tower + vision tower + language model) is loaded: captions are
text, and the talker / token2wav speech path of a full Omni checkpoint is several GB that
would never run. The thinker reads the same folder as the full model: its config is the
`thinker_config` of the Omni config and its weights are the `thinker.`-prefixed tensors.

The clip is given as sampled frames plus its soundtrack; the soundtrack is interleaved with
the frames in time (`use_audio_in_video`), the way Qwen2.5-Omni was trained to watch a
video with sound, so speech and sounds are tied to what is on screen.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from aiprod_recipes.spec import QwenOmniCaptioner

AUDIO_SAMPLE_RATE = 16_000

# The system turn Qwen2.5-Omni was trained with; other system prompts work for text but the
# processor warns on every call, and captions are closest to training with this one.
QWEN_OMNI_SYSTEM_PROMPT = (
    "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of "
    "perceiving auditory and visual inputs, as well as generating text and speech."
)

# Qwen's own cap on pixels per video frame; larger frames only add vision tokens.
VIDEO_MAX_PIXELS = 768 * 28 * 28


class QwenOmniError(RuntimeError):
    """The Qwen2.5-Omni captioner could not be loaded or run."""


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; anything else is passed through."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise QwenOmniError(f"caption.backend.device is {device!r} but no CUDA device is visible")
    return device


@dataclass
class QwenOmni:
    """A loaded thinker + processor, ready to caption clip after clip."""

    model: Any
    processor: Any
    device: str
    max_new_tokens: int

    def caption(self, frames: np.ndarray, audio: np.ndarray | None, instruction: str,
                fps: float | None = None) -> str:
        """Caption one clip: frames [N, H, W, 3] uint8, audio float32 mono 16 kHz or None.

        `fps` is the rate of the sampled frames (N / clip duration); it places frames and
        audio on one time axis. When omitted it is derived from the audio length.
        """
        import torch

        inputs, with_audio = prepare_inputs(self.processor, frames, audio, instruction, fps)
        inputs = inputs.to(self.device)
        dtype = self.model.dtype
        for key in ("pixel_values_videos", "input_features"):
            if key in inputs and inputs[key].is_floating_point():
                inputs[key] = inputs[key].to(dtype)
        with torch.inference_mode():
            out = self.model.generate(
                **inputs,
                use_audio_in_video=with_audio,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
            )
        new_tokens = out[:, inputs["input_ids"].shape[1]:]
        text = self.processor.batch_decode(new_tokens, skip_special_tokens=True,
                                           clean_up_tokenization_spaces=False)[0]
        return text.strip()


def load_qwen_omni(model_dir: str | Path, *, load_in_8bit: bool = False, device: str = "auto",
                   max_new_tokens: int = 256) -> QwenOmni:
    """Load the thinker and the processor from a local folder (never from a hub)."""
    folder = Path(model_dir)
    if not (folder / "config.json").is_file():
        raise QwenOmniError(f"{folder} is not a Qwen2.5-Omni folder (no config.json)")
    target = resolve_device(device)
    model = _load_thinker(folder, target, load_in_8bit)
    processor = load_processor(folder)
    return QwenOmni(model=model, processor=processor, device=target,
                    max_new_tokens=max_new_tokens)


def load_from_spec(backend: QwenOmniCaptioner, base_dir: Path | None = None) -> QwenOmni:
    """`load_qwen_omni` from the spec's backend section; a relative model_dir is under base_dir."""
    model_dir = Path(backend.model_dir)
    if base_dir is not None and not model_dir.is_absolute():
        model_dir = base_dir / model_dir
    return load_qwen_omni(model_dir, load_in_8bit=backend.load_in_8bit, device=backend.device,
                          max_new_tokens=backend.max_new_tokens)


def _load_thinker(folder: Path, device: str, load_in_8bit: bool) -> Any:
    import torch
    from transformers import AutoConfig, Qwen2_5OmniThinkerForConditionalGeneration

    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    thinker_config = getattr(config, "thinker_config", config)
    on_gpu = device.startswith("cuda")
    # device_map places each tensor as it is read: a 7B thinker never sits in host memory
    # in full before moving to the GPU.
    kwargs: dict[str, Any] = {
        "config": thinker_config,
        "local_files_only": True,
        "device_map": {"": device},
        "dtype": torch.bfloat16 if on_gpu else torch.float32,
    }
    if load_in_8bit:
        if not on_gpu:
            raise QwenOmniError("load_in_8bit needs a CUDA device (bitsandbytes); "
                                f"the captioner runs on {device!r}")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    model = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(folder, **kwargs)
    return model.eval()


def load_processor(folder: str | Path, torchvision: bool | None = None) -> Any:
    """The Omni processor of a folder.

    transformers' video processor for Qwen2-VL needs torchvision (the ``qwen`` extra); it
    is used when installed (``torchvision=None``) or asked for. Without it the patches are
    made by the Qwen2-VL image processor's frame path, with the settings the Omni processor
    gives its video processor (the video pixel range) over the folder's
    preprocessor_config.json: the same frames give the same patch grid either way, so
    captioning does not depend on torchvision.
    """
    from transformers import Qwen2_5OmniProcessor
    from transformers.utils import is_torchvision_available

    folder = Path(folder)
    if is_torchvision_available() if torchvision is None else torchvision:
        return Qwen2_5OmniProcessor.from_pretrained(folder, local_files_only=True)

    from transformers import AutoTokenizer, Qwen2VLImageProcessor, WhisperFeatureExtractor

    class FramesVideoProcessor(Qwen2VLImageProcessor):
        """Qwen2-VL's image processor, called with a stack of frames as the video."""

        def __call__(self, videos: Any = None, **kwargs: Any) -> Any:
            with _quiet("transformers.models.qwen2_vl.image_processing_qwen2_vl"):
                return super().__call__(images=None, videos=videos, size=kwargs.get("size"),
                                        return_tensors=kwargs.get("return_tensors"))

    class FramesOmniProcessor(Qwen2_5OmniProcessor):
        """The Omni processor, with its video pieces made by `FramesVideoProcessor`."""

        video_processor_class = "Qwen2VLImageProcessor"

    pieces = [
        Qwen2VLImageProcessor.from_pretrained(folder, local_files_only=True),
        FramesVideoProcessor.from_pretrained(folder, local_files_only=True),
        WhisperFeatureExtractor.from_pretrained(folder, local_files_only=True),
        AutoTokenizer.from_pretrained(folder, local_files_only=True),
    ]
    processor_dict, _ = Qwen2_5OmniProcessor.get_processor_dict(folder, local_files_only=True)
    return FramesOmniProcessor.from_args_and_dict(pieces, processor_dict)


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Silence one logger (the image processor warns on every frame stack it is given)."""
    log = logging.getLogger(logger_name)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def build_conversation(instruction: str) -> list[dict[str, Any]]:
    """The chat: Qwen's system turn, then the video (its sound rides along) and the ask."""
    return [
        {"role": "system", "content": [{"type": "text", "text": QWEN_OMNI_SYSTEM_PROMPT}]},
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": instruction}]},
    ]


def prepare_inputs(processor: Any, frames: np.ndarray, audio: np.ndarray | None,
                   instruction: str, fps: float | None = None) -> tuple[Any, bool]:
    """Tokenised prompt + media tensors; returns (inputs, whether audio is interleaved)."""
    frames = _check_frames(frames)
    with_audio = audio is not None and audio.size > 0
    if with_audio:
        audio = _check_audio(audio)
        if fps is None:
            fps = len(frames) / (len(audio) / AUDIO_SAMPLE_RATE)
    fps = 2.0 if fps is None else float(fps)
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    text = processor.apply_chat_template(build_conversation(instruction),
                                         add_generation_prompt=True, tokenize=False)
    inputs = processor(
        text=text,
        videos=[frames],
        audio=[audio] if with_audio else None,
        return_tensors="pt",
        padding=True,
        use_audio_in_video=with_audio,
        fps=fps,
    )
    return inputs, with_audio


def _check_frames(frames: np.ndarray) -> np.ndarray:
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3:
        shape = getattr(frames, "shape", None)
        raise ValueError(f"frames must be an array [N, H, W, 3], got shape {shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    if len(frames) == 0:
        raise ValueError("frames is empty")
    return _fit_pixels(frames, VIDEO_MAX_PIXELS)


def _fit_pixels(frames: np.ndarray, max_pixels: int) -> np.ndarray:
    """Downscale frames above max_pixels (area filter), keeping the aspect ratio."""
    height, width = frames.shape[1:3]
    if height * width <= max_pixels:
        return frames
    import cv2

    scale = (max_pixels / (height * width)) ** 0.5
    size = (max(28, int(width * scale)), max(28, int(height * scale)))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


def _check_audio(audio: np.ndarray) -> np.ndarray:
    if not isinstance(audio, np.ndarray) or audio.ndim != 1:
        shape = getattr(audio, "shape", None)
        raise ValueError(f"audio must be a mono array [samples] at 16 kHz, got shape {shape}")
    return audio.astype(np.float32, copy=False)


class QwenOmniBackend:
    """Captions from a local Qwen2.5-Omni (``caption.backend.type = "qwen_omni"``): frames
    sampled evenly over each clip plus its 16 kHz mono sound; the model loads at the first
    clip that needs a caption, so a rerun that reuses every caption never loads it."""

    reproducible = False

    def __init__(self, caption: Any, *, workdir: Path, **_: Any) -> None:
        self.backend = caption.backend
        self.instruction = caption.instruction
        self.workdir = workdir
        self._model: QwenOmni | None = None

    def key_part(self, source: str) -> str | None:
        return None

    def caption(self, item: str, source: str, clip: Any) -> str | None:
        from aiprod_recipes.media.audio import decode_audio
        from aiprod_recipes.media.probe import probe
        from aiprod_recipes.media.video import decode_frames

        self._model = self._model or load_from_spec(self.backend)
        path = self.workdir / f"{item}.mp4"
        path.write_bytes(clip())
        try:
            fps = self.backend.num_frames / max(probe(path).duration_s, 1e-3)
            frames = decode_frames(path, fps)[: self.backend.num_frames]
            audio = decode_audio(path, AUDIO_SAMPLE_RATE, 1)
            mono = None if audio is None else np.ascontiguousarray(audio[0])
            return self._model.caption(frames, mono, self.instruction, fps=fps)
        finally:
            path.unlink(missing_ok=True)

    def is_fatal(self, error: Exception) -> bool:
        return isinstance(error, ImportError)
