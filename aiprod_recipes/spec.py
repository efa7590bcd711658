"""The recipe spec: every parameter of a run, declared once, with its default and constraint.

A recipe is a TOML file (``params.toml`` by default) decoded into these Structs. Decoding is
strict: an unknown key, a wrong type or a value out of range is an error that names the key.
Rules that span several fields live in ``__post_init__``. Nothing here touches the disk, so a
spec can be validated anywhere (an editor, CI, a machine without the data).

Each field carries a one-line description in its ``Meta``; ``aiprod-recipes schema`` turns
them into a JSON Schema for editors.
"""

from __future__ import annotations

import posixpath
import re
from typing import Annotated, ClassVar, Literal

import msgspec
from msgspec import Meta

from aiprod_recipes.names import STAGES_DIR, TRAIN, stage_dir

__all__ = [
    "PATTERN_MEANINGS",
    "SECTIONS",
    "Spec",
]

# --------------------------------------------------------------------------- text patterns

LINE = r"^[^\x00-\x1f\x7f-\x9f]*$"
"""One line of printable text: no control characters (NUL, escape, newline, tab...)."""
TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"
"""Printable text over several lines: newlines and tabs allowed, other controls not."""
DEVICE = r"^(auto|cpu|mps|cuda(:[0-9]+)?)$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
URL = r"^(https?://[^\s\x00-\x1f\x7f]+)?$"
EXTENSION = r"^\.[a-z0-9]+$"
MODULE_SUFFIX = r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$"

PATTERN_MEANINGS: dict[str, str] = {
    LINE: "must be one line of printable text (no control characters)",
    TEXT: "must be printable text (no control characters other than newlines and tabs)",
    DEVICE: "must be auto, cpu, mps, cuda or cuda:N",
    ENV_NAME: "must be an environment variable name (letters, digits, _)",
    URL: "must be empty or an http(s):// URL",
    EXTENSION: "must be lower case and start with a dot, like .mp4",
    MODULE_SUFFIX: "must be a module name suffix, like to_q or to_out.0",
}
"""What each pattern means, for error messages (msgspec only prints the regex)."""

MAX_STEPS = 10_000_000
"""Upper bound of every step count: far beyond any real run, and a typo stays an error."""
MAX_SECONDS = 3600.0


def described(description: str, **constraints: object) -> Meta:
    """A field's Meta: its description plus its constraints."""
    return Meta(description=description, **constraints)  # type: ignore[arg-type]


class Base(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=False):
    """Strict base: unknown keys are errors, every field is keyword-only."""


class SpecRuleError(ValueError):
    """Spec rules were broken; each line of the message is "dotted.key: what is allowed"."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _rules(*checks: tuple[bool, str, str]) -> None:
    """Raise one SpecRuleError listing every (ok, key, message) check that failed."""
    problems = [f"{key}: {message}" for ok, key, message in checks if not ok]
    if problems:
        raise SpecRuleError(problems)


def _rule(ok: bool, key: str, message: str) -> None:
    """A single cross-field rule."""
    _rules((ok, key, message))


# --------------------------------------------------------------------------- paths

def _relative_inside(path: str) -> bool:
    """A relative path that stays inside the project (no leading ``..`` once normalised)."""
    norm = posixpath.normpath(path)
    return not posixpath.isabs(path) and norm != ".." and not norm.startswith("../")


def project_path_checks(path: str, key: str) -> list[tuple[bool, str, str]]:
    """A file the pipeline reads and DVC tracks: relative, inside the project."""
    return [(_relative_inside(path), key,
             f"must be a path inside the project, relative to it (got {path!r})")]


def model_path_checks(path: str, key: str) -> list[tuple[bool, str, str]]:
    """Model weights: inside the project, or an absolute path (a checkpoint of tens of GB
    usually lives outside; DVC still tracks it as a dependency). A relative path that
    leaves the project, or a ``~`` the shell never expanded, is a mistake."""
    return [
        (not path.startswith("~"), key,
         f"write the home folder out as an absolute path (got {path!r})"),
        (posixpath.isabs(path) or _relative_inside(path), key,
         f"must be inside the project or an absolute path (got {path!r})"),
    ]


def _overlaps(path: str, other: str) -> bool:
    """One of two normalised relative paths is the other or inside it."""
    a, b = posixpath.normpath(path), posixpath.normpath(other)
    return a == "." or a == b or b.startswith(a + "/") or a.startswith(b + "/")


# --------------------------------------------------------------------------- data / ingest

Seed = Annotated[int, described("Random seed.", ge=0, le=2**32 - 1)]


class Data(Base):
    """Where the raw clips are."""

    raw_dir: Annotated[
        str, described("Folder of raw clips (and sidecar captions), inside the project.",
                       min_length=1, pattern=LINE)] = (
        "data/sample"
    )
    extensions: Annotated[
        list[Annotated[str, Meta(pattern=EXTENSION)]],
        described("Only files with these extensions are clips (lower case, with dot); "
                  "empty: every file but hidden files and caption sidecars is opened and "
                  "kept when it holds video.", max_length=64)
    ] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        _rules(*project_path_checks(self.raw_dir, "data.raw_dir"),
               (not _overlaps(self.raw_dir, STAGES_DIR.as_posix()), "data.raw_dir",
                f"must not be the project itself or overlap {STAGES_DIR} (got "
                f"{self.raw_dir!r})"))


class ContentDetector(Base, tag="content", tag_field="type"):
    """PySceneDetect ContentDetector: cuts where HSV content changes quickly."""

    threshold: Annotated[
        float, described("Content change that marks a cut.", gt=0.0, le=255.0)] = 27.0


class AdaptiveDetector(Base, tag="adaptive", tag_field="type"):
    """PySceneDetect AdaptiveDetector: content change relative to a rolling average."""

    adaptive_threshold: Annotated[
        float, described("Ratio to the rolling average for a cut.", gt=0, le=255.0)] = 3.0
    min_content_val: Annotated[
        float, described("Minimum content change for a cut.", ge=0, le=255.0)] = 15.0
    window_width: Annotated[
        int, described("Frames each side in the rolling average.", ge=1, le=1000)] = 2


class ThresholdDetector(Base, tag="threshold", tag_field="type"):
    """PySceneDetect ThresholdDetector: fades to and from black."""

    threshold: Annotated[
        float, described("Mean pixel intensity of a dark frame.", ge=0, le=255.0)] = 12.0
    fade_bias: Annotated[float, described("Where the cut lands in a fade (-1 start, +1 end).",
                                   ge=-1.0, le=1.0)] = 0.0


class HistogramDetector(Base, tag="histogram", tag_field="type"):
    """PySceneDetect HistogramDetector: cuts on YUV histogram distance."""

    threshold: Annotated[
        float, described("Histogram difference that marks a cut.", gt=0, le=1)] = 0.05
    bins: Annotated[int, described("Histogram bins.", ge=2, le=256)] = 256


class NoDetector(Base, tag="none", tag_field="type"):
    """No scene detection: each clip is one scene (then split by max_duration_s)."""


Detector = ContentDetector | AdaptiveDetector | ThresholdDetector | HistogramDetector | NoDetector


X264Preset = Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                     "slower", "veryslow"]
"""x264's speed presets, fastest first."""


class Ingest(Base):
    """Scene splitting and clip normalisation."""

    detector: Detector = msgspec.field(default_factory=ContentDetector)
    min_scene_frames: Annotated[
        int, described("Minimum scene length the detector reports.", ge=1, le=100_000)] = 15
    min_duration_s: Annotated[float, described("Scenes shorter than this are dropped.", gt=0,
                                        le=MAX_SECONDS)] = 1.0
    max_duration_s: Annotated[float, described("Scenes longer than this are split.", gt=0,
                                        le=MAX_SECONDS)] = 10.0
    fps: Annotated[float, described("Frame rate of the normalised clips.", gt=0, le=240)] = 24.0
    max_width: Annotated[
        int, described("Frames wider than this are rejected.", ge=32, le=16384)] = 7680
    max_height: Annotated[
        int, described("Frames taller than this are rejected.", ge=32, le=16384)] = 4320
    crf: Annotated[int, described("H.264 quality of the normalised clips (lower is better).",
                           ge=0, le=51)] = 18
    preset: Annotated[X264Preset, described(
        "x264 speed preset of the normalised clips: faster presets spend more bytes for the "
        "same crf quality.")] = "veryfast"
    strict: Annotated[
        bool, described("Fail on the first bad input instead of skipping it.")] = False

    def __post_init__(self) -> None:
        _rule(self.max_duration_s >= self.min_duration_s, "ingest.max_duration_s",
              f"must be >= ingest.min_duration_s ({self.min_duration_s})")


# --------------------------------------------------------------------------- caption

class SidecarCaptions(Base, tag="sidecar", tag_field="type"):
    """Captions from files next to the clips (.txt/.json/.jsonl/.csv) or one manifest file."""

    manifest: Annotated[str, described(
        "One caption file for all clips, relative to data.raw_dir and inside the project "
        "(a dependency of the caption stage); empty: per-clip sidecar files.",
        pattern=LINE)] = ""


class QwenOmniCaptioner(Base, tag="qwen_omni", tag_field="type"):
    """A local Qwen2.5-Omni model through transformers."""

    model_dir: Annotated[str, described(
        "Folder with the Qwen2.5-Omni weights: inside the project or an absolute path "
        "(a dependency of the caption stage).", min_length=1, pattern=LINE)]
    load_in_8bit: Annotated[
        bool, described("Load the weights in 8 bit through bitsandbytes.")] = False
    num_frames: Annotated[int, described("Frames sampled from each clip.", ge=1, le=64)] = 8
    max_new_tokens: Annotated[int, described("Longest caption in tokens.", ge=1, le=4096)] = 256
    device: Annotated[str, described("torch device: auto, cpu, mps, cuda, cuda:N.",
                                     pattern=DEVICE)] = "auto"

    def __post_init__(self) -> None:
        _rules(*model_path_checks(self.model_dir, "caption.backend.model_dir"))


class GeminiCaptioner(Base, tag="gemini", tag_field="type"):
    """The Gemini API through google-genai; the key is read from an environment variable."""

    model: Annotated[str, described("Gemini model name.", min_length=1,
                                    pattern=LINE)] = "gemini-2.5-flash"
    api_key_env: Annotated[str, described("Environment variable holding the API key.",
                                   min_length=1, pattern=ENV_NAME)] = "GEMINI_API_KEY"
    base_url: Annotated[str, described("API endpoint; empty for Google's default.",
                                       pattern=URL)] = ""
    max_retries: Annotated[
        int, described("Retries on rate limits and server errors.", ge=0, le=100)] = 5
    timeout_s: Annotated[float, described("Per-request timeout in seconds.", gt=0,
                                          le=MAX_SECONDS)] = 120.0


Captioner = SidecarCaptions | QwenOmniCaptioner | GeminiCaptioner

DEFAULT_INSTRUCTION = (
    "Describe this video clip for training a video generation model. In one paragraph, say "
    "what is seen (subjects, actions, setting, camera, lighting), what is said (quote speech), "
    "other sounds and music, and any on-screen text. Write only the description."
)


class Caption(Base):
    """Captioning: the backend, the instruction, cleanup and the trigger word."""

    backend: Captioner = msgspec.field(default_factory=SidecarCaptions)
    instruction: Annotated[str, described("What the model captioners are asked.",
                                   min_length=1, max_length=10_000,
                                   pattern=TEXT)] = DEFAULT_INSTRUCTION
    trigger_word: Annotated[str, described("Prepended to every caption (empty: none).",
                                           max_length=200, pattern=LINE)] = ""
    on_missing: Annotated[
        Literal["error", "drop"],
        described("A clip without a caption stops the stage or is dropped.")] = "error"
    clean: Annotated[bool, described("Strip model preambles, markdown and quotes.")] = True


# --------------------------------------------------------------------------- model

class TinyModel(Base, tag="tiny", tag_field="type"):
    """A tiny, seeded, randomly initialised LTX-2 built by the pipeline (CPU smoke runs)."""

    seed: Seed = 0
    layers: Annotated[int, described("Transformer blocks.", ge=1, le=8)] = 2


class CheckpointModel(Base, tag="checkpoint", tag_field="type"):
    """A real LTX-2 single-file checkpoint and a Gemma folder."""

    path: Annotated[str, described("LTX-2 .safetensors checkpoint: inside the project or an "
                                   "absolute path.", min_length=1, pattern=LINE)]
    gemma_dir: Annotated[str, described("Folder with the Gemma-3 text encoder and tokenizer: "
                                        "inside the project or an absolute path.",
                                        min_length=1, pattern=LINE)]

    def __post_init__(self) -> None:
        _rules(*model_path_checks(self.path, "model.source.path"),
               *model_path_checks(self.gemma_dir, "model.source.gemma_dir"))


class Model(Base):
    """The base model and where it runs."""

    source: TinyModel | CheckpointModel = msgspec.field(default_factory=TinyModel)
    dtype: Annotated[Literal["bfloat16", "float32"], described("Weights dtype.")] = "bfloat16"
    device: Annotated[str, described("torch device: auto, cpu, mps, cuda, cuda:N.",
                                     pattern=DEVICE)] = "auto"


class TextEncoder(Base):
    """Gemma text features (the LTX-2 text path before the connectors)."""

    max_tokens: Annotated[
        int, described("Padded token count (multiple of 128).", ge=128, le=4096)] = 128
    load_in_8bit: Annotated[
        bool, described("Load Gemma's weights in 8 bit through bitsandbytes (CUDA only).")] = False

    def __post_init__(self) -> None:
        _rule(self.max_tokens % 128 == 0, "text_encoder.max_tokens",
              f"must be a multiple of 128 (the connectors' register count), got {self.max_tokens}")


# --------------------------------------------------------------------------- latents

class Bucket(Base):
    """A resolution/frame bucket: width x height x frames."""

    width: Annotated[int, described("Width in pixels (multiple of 32).", ge=32, le=8192)]
    height: Annotated[int, described("Height in pixels (multiple of 32).", ge=32, le=8192)]
    frames: Annotated[int, described("Frames (8k + 1).", ge=1, le=1025)]


def bucket_checks(b: Bucket, key: str) -> list[tuple[bool, str, str]]:
    """LTX-2's shape rules: W and H multiples of 32, frames = 8k + 1."""
    return [
        (b.width % 32 == 0, f"{key}.width", f"must be a multiple of 32, got {b.width}"),
        (b.height % 32 == 0, f"{key}.height", f"must be a multiple of 32, got {b.height}"),
        ((b.frames - 1) % 8 == 0, f"{key}.frames",
         f"must be 8k + 1 (1, 9, 17, ..., 121), got {b.frames}"),
    ]


class Video(Base):
    """Video latents: buckets, cropping, VAE encoding."""

    buckets: Annotated[list[Bucket], described("Resolution/frame buckets.", min_length=1,
                                               max_length=64)] = (
        msgspec.field(default_factory=lambda: [Bucket(width=768, height=512, frames=121)])
    )
    crop: Annotated[
        Literal["center", "random"], described("How a frame is cropped to its bucket.")] = (
        "center"
    )
    seed: Seed = 0
    tiled_encode: Annotated[bool, described("Encode large frames in tiles to save memory.")] = False

    def __post_init__(self) -> None:
        _rules(*(check for i, b in enumerate(self.buckets)
                 for check in bucket_checks(b, f"video.buckets[{i}]")))


class Audio(Base):
    """Audio latents (16 kHz log-mel through the audio VAE)."""

    enabled: Annotated[bool, described("Encode audio latents.")] = True
    on_missing: Annotated[Literal["silence", "skip"],
                          described("A clip without sound gets silence or is skipped.")] = "silence"


class Reference(Base):
    """Canny-edge reference videos for IC-LoRA (video-to-video)."""

    enabled: Annotated[bool, described("Compute reference latents.")] = False
    canny_low: Annotated[int, described("Canny lower hysteresis threshold.", ge=0, le=1000)] = 100
    canny_high: Annotated[int, described("Canny upper hysteresis threshold.", ge=0, le=1000)] = 200
    downscale: Annotated[int, described("Reference resolution divisor (1, 2, 4).", ge=1, le=8)] = 1

    def __post_init__(self) -> None:
        _rule(self.canny_high >= self.canny_low, "reference.canny_high",
              f"must be >= reference.canny_low ({self.canny_low})")
        _rule(self.downscale in (1, 2, 4, 8), "reference.downscale",
              f"must be 1, 2, 4 or 8, got {self.downscale}")


class Split(Base):
    """Train/validation split by content hash."""

    val_fraction: Annotated[float, described("Share of clips held out.", ge=0.0, lt=1.0)] = 0.2
    seed: Seed = 0


# --------------------------------------------------------------------------- training

class TextToVideo(Base, tag="text_to_video", tag_field="type"):
    """Text-to-video, optionally with the audio branch (joint audio-video)."""

    uses_reference: ClassVar[bool] = False
    """Trains on reference latents (IC-LoRA): needs the reference stage and a LoRA."""

    with_audio: Annotated[bool, described("Train the audio branch jointly.")] = True
    independent_audio_timestep: Annotated[
        bool, described("Draw the audio noise level independently of the video's.")] = True


class ImageToVideo(Base, tag="image_to_video", tag_field="type"):
    """Image-to-video: the first latent frame is kept clean (timestep 0, no loss)."""

    uses_reference: ClassVar[bool] = False

    first_frame_p: Annotated[float, described("Probability of conditioning on the first frame.",
                                       ge=0.0, le=1.0)] = 0.9
    with_audio: Annotated[bool, described("Train the audio branch jointly.")] = True
    independent_audio_timestep: Annotated[
        bool, described("Draw the audio noise level independently of the video's.")] = True


class VideoToVideo(Base, tag="video_to_video", tag_field="type"):
    """Video-to-video IC-LoRA: reference tokens at timestep 0, loss on the target only."""

    uses_reference: ClassVar[bool] = True

    with_audio: Annotated[bool, described("Train the audio branch jointly.")] = False
    independent_audio_timestep: Annotated[
        bool, described("Draw the audio noise level independently of the video's.")] = True


StrategyConfig = TextToVideo | ImageToVideo | VideoToVideo

DEFAULT_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


class Lora(Base):
    """LoRA adapter shape (peft)."""

    rank: Annotated[int, described("LoRA rank.", ge=1, le=1024)] = 16
    alpha: Annotated[float, described("LoRA alpha (scale = alpha / rank).", gt=0,
                                      le=65536.0)] = 16.0
    dropout: Annotated[float, described("LoRA dropout.", ge=0.0, lt=1.0)] = 0.0
    target_modules: Annotated[list[Annotated[str, Meta(pattern=MODULE_SUFFIX)]],
                              described("Module name suffixes that get adapters.",
                                        min_length=1, max_length=256)] = msgspec.field(
        default_factory=lambda: list(DEFAULT_TARGETS))
    init_from: Annotated[str, described(
        "Start from this adapter instead of a fresh one: a .safetensors path (inside the repo it "
        "is a DVC dependency of train) or a Hub repo id owner/name[@revision] read from the "
        "local Hugging Face cache; its rank and targets must match. Empty: a fresh adapter.",
        pattern=LINE)
    ] = ""

    def __post_init__(self) -> None:
        own = stage_dir(TRAIN).as_posix() + "/"
        _rules(
            (not self.init_from or init_from_is_path(self.init_from)
             or _HUB_ID.fullmatch(self.init_from) is not None, "lora.init_from",
             f"a .safetensors path or a Hub repo id owner/name[@revision], got "
             f"{self.init_from!r}"),
            (not posixpath.normpath(self.init_from.replace("\\", "/")).startswith(own),
             "lora.init_from", f"must not be inside {own} (the train stage replaces it): copy "
             "the adapter elsewhere first (e.g. adapters/) and `dvc add` it"),
            *(model_path_checks(self.init_from, "lora.init_from")
              if init_from_is_path(self.init_from) else ()),
        )


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*(@[\w./-]+)?")


def init_from_is_path(value: str) -> bool:
    """``lora.init_from`` names a file (not a Hub repo id): it ends in .safetensors."""
    return value.endswith(".safetensors")


Beta = Annotated[float, Meta(ge=0.0, lt=1.0)]


class Optim(Base):
    """Optimiser and learning-rate schedule."""

    optimizer: Annotated[Literal["adamw", "adamw8bit"], described("AdamW or 8-bit AdamW.")] = (
        "adamw"
    )
    learning_rate: Annotated[float, described("Peak learning rate, in (0, 1).", gt=0.0,
                                              lt=1.0)] = 1e-4
    weight_decay: Annotated[float, described("Decoupled weight decay.", ge=0.0, le=10.0)] = 0.0
    betas: Annotated[tuple[Beta, Beta], described("Adam betas, each in [0, 1).")] = (0.9, 0.999)
    eps: Annotated[float, described("Adam epsilon.", gt=0, le=1.0)] = 1e-8
    scheduler: Annotated[
        Literal["constant", "linear", "cosine"], described("LR schedule.")] = "constant"
    warmup_steps: Annotated[int, described("Linear warm-up steps.", ge=0, le=MAX_STEPS)] = 0
    max_grad_norm: Annotated[float, described("Gradient clipping norm (0: off).", ge=0.0,
                                              le=1e6)] = 1.0


class Train(Base):
    """The training loop."""

    mode: Annotated[Literal["lora", "full"], described("LoRA adapter or full fine-tune.")] = "lora"
    steps: Annotated[int, described("Optimiser steps.", ge=1, le=MAX_STEPS)] = 1000
    batch_size: Annotated[int, described("Clips per micro-batch.", ge=1, le=4096)] = 1
    gradient_accumulation_steps: Annotated[
        int, described("Micro-batches per optimiser step.", ge=1, le=4096)] = 1
    gradient_checkpointing: Annotated[bool, described("Recompute activations in backward.")] = False
    mixed_precision: Annotated[Literal["no", "bf16"], described("Autocast precision.")] = "bf16"
    seed: Seed = 42
    checkpoint_every: Annotated[
        int, described("Steps between resumable checkpoints (0: off).", ge=0, le=MAX_STEPS)] = (
        250
    )
    log_every: Annotated[int, described("Steps between metric logs.", ge=1, le=MAX_STEPS)] = 10
    keep_checkpoints: Annotated[int, described(
        "Intermediate adapters kept in the output (checkpoints/step_NNNNNN.safetensors): the "
        "last K saved at checkpoint and validation steps, plus the best held-out one when "
        "eval.every_steps > 0. 0: only the final one.", ge=0, le=10_000)] = 0
    trackers: Annotated[list[Literal["tensorboard", "wandb"]], described(
        "Experiment trackers beside DVCLive, through accelerate (extras: "
        "aiprod-recipes[tensorboard], aiprod-recipes[wandb]; W&B honours WANDB_MODE=offline).",
        max_length=2)] = msgspec.field(default_factory=list)
    accelerate_config: Annotated[str, described(
        "accelerate config file for multi-process training (DDP, FSDP), inside the project; "
        "empty: one process.", pattern=LINE)] = ""
    compile: Annotated[bool, described(
        "Compile the transformer blocks with torch.compile.")] = False

    def __post_init__(self) -> None:
        _rules((self.checkpoint_every <= self.steps, "train.checkpoint_every",
                f"must be <= train.steps ({self.steps})"),
               (len(set(self.trackers)) == len(self.trackers), "train.trackers",
                f"each tracker once, got {list(self.trackers)}"),
               *(project_path_checks(self.accelerate_config, "train.accelerate_config")
                 if self.accelerate_config else ()))


class Flow(Base):
    """Flow-matching noise-level sampling."""

    timestep_sampler: Annotated[Literal["uniform", "shifted_logit_normal"],
                                described("How noise levels are drawn.")] = "shifted_logit_normal"
    logit_mean: Annotated[float, described("Mean of the logit-normal.", ge=-10.0, le=10.0)] = 0.0
    logit_std: Annotated[float, described("Std of the logit-normal.", gt=0, le=10.0)] = 1.0
    base_shift: Annotated[float, described("Shift at min_tokens.", ge=-10.0, le=10.0)] = 0.95
    max_shift: Annotated[float, described("Shift at max_tokens.", ge=-10.0, le=10.0)] = 2.05
    min_tokens: Annotated[int, described("Token count where base_shift applies.", ge=1,
                                         le=MAX_STEPS)] = 1024
    max_tokens: Annotated[int, described("Token count where max_shift applies.", ge=1,
                                         le=MAX_STEPS)] = 4096
    stretch: Annotated[bool, described("Stretch sampled levels to cover [eps, 1].")] = False

    def __post_init__(self) -> None:
        _rule(self.max_tokens > self.min_tokens, "flow.max_tokens",
              f"must be > flow.min_tokens ({self.min_tokens})")


class Quant(Base):
    """Quantization of the frozen base under the LoRA (optimum-quanto)."""

    base: Annotated[
        Literal["none", "int8", "fp8"], described("Frozen base weights precision.")] = "none"


class Memory(Base):
    """Where the frozen weights live during a run: runtime choices that never change results.

    Whether ``blocks_to_swap`` is below the model's block count needs the model, so the
    loader and the planner check it, not the spec.
    """

    blocks_to_swap: Annotated[int, described(
        "Transformer blocks kept in pinned CPU memory and moved to the GPU just before use.",
        ge=0, le=128)] = 0


Prompt = Annotated[str, Meta(min_length=1, max_length=10_000, pattern=TEXT)]
LossLevel = Annotated[float, Meta(gt=0.0, lt=1.0)]


class Eval(Base):
    """Validation sampling and held-out metrics."""

    prompts: Annotated[
        list[Prompt], described("Prompts to sample; empty: the val clips' captions.",
                                max_length=1000)] = (
        msgspec.field(default_factory=list)
    )
    max_samples: Annotated[int, described("Most samples generated.", ge=0, le=1000)] = 4
    every_steps: Annotated[int, described(
        "Also render the samples and the held-out loss with the current weights every N "
        "training steps, logged through DVCLive (0: off, evaluate only).", ge=0,
        le=MAX_STEPS)] = 0
    bucket: Bucket = msgspec.field(default_factory=lambda: Bucket(width=768, height=512,
                                                                  frames=121))
    steps: Annotated[int, described("Euler sampling steps.", ge=1, le=500)] = 30
    cfg_scale: Annotated[float, described("Classifier-free guidance scale (1: off).", ge=1.0,
                                          le=100.0)] = 3.0
    stg_scale: Annotated[float, described("Spatio-temporal guidance scale (0: off).", ge=0.0,
                                          le=100.0)] = 1.0
    stg_blocks: Annotated[list[Annotated[int, Meta(ge=0, le=1000)]],
                          described("Transformer blocks skipped for STG.", max_length=1000)] = (
        msgspec.field(default_factory=lambda: [1])
    )
    negative_prompt: Annotated[str, described("Negative prompt for CFG.", max_length=10_000,
                                              pattern=TEXT)] = ""
    seed: Seed = 0
    loss_levels: Annotated[list[LossLevel], described(
        "Noise levels of the held-out loss, each in (0, 1).", min_length=1,
        max_length=100)] = msgspec.field(default_factory=lambda: [0.1, 0.3, 0.5, 0.7, 0.9])

    def __post_init__(self) -> None:
        _rules(*bucket_checks(self.bucket, "eval.bucket"))


# --------------------------------------------------------------------------- the whole spec

class Spec(Base):
    """A whole fine-tuning run."""

    data: Data = msgspec.field(default_factory=Data)
    ingest: Ingest = msgspec.field(default_factory=Ingest)
    caption: Caption = msgspec.field(default_factory=Caption)
    model: Model = msgspec.field(default_factory=Model)
    text_encoder: TextEncoder = msgspec.field(default_factory=TextEncoder)
    video: Video = msgspec.field(default_factory=Video)
    audio: Audio = msgspec.field(default_factory=Audio)
    reference: Reference = msgspec.field(default_factory=Reference)
    split: Split = msgspec.field(default_factory=Split)
    strategy: StrategyConfig = msgspec.field(default_factory=TextToVideo)
    lora: Lora = msgspec.field(default_factory=Lora)
    optim: Optim = msgspec.field(default_factory=Optim)
    train: Train = msgspec.field(default_factory=Train)
    flow: Flow = msgspec.field(default_factory=Flow)
    quant: Quant = msgspec.field(default_factory=Quant)
    memory: Memory = msgspec.field(default_factory=Memory)
    eval: Eval = msgspec.field(default_factory=Eval)

    def __post_init__(self) -> None:
        ic = self.strategy.uses_reference
        d = self.reference.downscale
        _rules(
            *((not self.reference.enabled or ((b.width // d) % 32 == 0 and (b.height // d) % 32
               == 0 and b.width % d == 0 and b.height % d == 0), f"video.buckets[{i}]",
               f"{b.width}x{b.height} divided by reference.downscale = {d} must stay a multiple"
               " of 32") for i, b in enumerate(self.video.buckets)),
            (not ic or self.train.mode == "lora", "train.mode",
             'strategy.type = "video_to_video" (IC-LoRA) needs train.mode = "lora"'),
            (not ic or self.reference.enabled, "reference.enabled",
             'strategy.type = "video_to_video" (IC-LoRA) needs reference.enabled = true'),
            (self.quant.base == "none" or self.train.mode == "lora", "quant.base",
             'a quantized base can only be trained through a LoRA (train.mode = "lora")'),
            (not self.strategy.with_audio or self.audio.enabled, "audio.enabled",
             "strategy.with_audio = true needs audio.enabled = true"),
            (self.memory.blocks_to_swap == 0 or self.train.mode == "lora",
             "memory.blocks_to_swap", 'block swap keeps frozen weights on the CPU; a full '
             'fine-tune (train.mode = "full") trains every weight: set it to 0'),
            (self.eval.every_steps <= self.train.steps, "eval.every_steps",
             f"must be <= train.steps ({self.train.steps})"),
            (not self.train.keep_checkpoints or self.train.checkpoint_every
             or self.eval.every_steps, "train.keep_checkpoints",
             "needs train.checkpoint_every > 0 or eval.every_steps > 0 (the steps that save "
             "an adapter)"),
            (not self.lora.init_from or self.train.mode == "lora", "lora.init_from",
             'needs train.mode = "lora"'),
            *self._manifest_checks(),
        )

    def _manifest_checks(self) -> list[tuple[bool, str, str]]:
        """A caption manifest is named relative to data.raw_dir; it must stay inside the
        project, where DVC tracks it as a dependency of the caption stage."""
        backend = self.caption.backend
        if not isinstance(backend, SidecarCaptions) or not backend.manifest:
            return []
        joined = posixpath.join(self.data.raw_dir, backend.manifest)
        return [(_relative_inside(joined), "caption.backend.manifest",
                 f"must name a file inside the project (relative to data.raw_dir = "
                 f"{self.data.raw_dir!r}), got {backend.manifest!r}")]


SECTIONS: tuple[str, ...] = tuple(Spec.__struct_fields__)


def manifest_path(spec: Spec) -> str | None:
    """The caption manifest file a spec names (project-relative), or None."""
    backend = spec.caption.backend
    if isinstance(backend, SidecarCaptions) and backend.manifest:
        return posixpath.normpath(posixpath.join(spec.data.raw_dir, backend.manifest))
    return None
