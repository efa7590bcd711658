"""Seeded flow-matching Euler sampling of LTX-2 video + audio, and decoding to an mp4.

Built from ltx-core's parts: ``LTX2Scheduler`` for the sigmas (shifted by the target's
token count), the transformer for velocities, ``MultiModalGuider`` + perturbations for
CFG/STG (``guidance``), ``EulerDiffusionStep`` for the update, the VAE decoders and the
vocoder for pixels and sound. Tokens, positions and text context come from
``training.forward``, so a sample sees exactly the inputs the adapter was trained on.

Conditioning follows training (``training.flow``): a conditioning token carries timestep 0 and
stays clean. Image-to-video clamps the first latent frame to the encoded image;
video-to-video (IC-LoRA) appends the reference latent's tokens after the target's.
Each step: per-token timesteps = sigma x denoise mask; denoised = x - v t; guided; the
conditioning tokens are put back; one Euler step.

All noise comes from a CPU ``torch.Generator`` seeded by the request, so a seed gives the
same latents on any device and the same mp4 bytes on the CPU.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from ltx_core.components.diffusion_steps import EulerDiffusionStep
from ltx_core.components.patchifiers import AudioPatchifier, VideoLatentPatchifier
from ltx_core.components.schedulers import LTX2Scheduler
from ltx_core.guidance.perturbations import BatchedPerturbationConfig
from ltx_core.model.transformer.modality import Modality
from ltx_core.types import AudioLatentShape, VideoLatentShape
from tqdm import tqdm

from aiprod_recipes.inference.guidance import Guidance, stg_perturbations
from aiprod_recipes.media.buckets import Bucket, fit_frames
from aiprod_recipes.media.encode import encode_mp4
from aiprod_recipes.model.loader import Components
from aiprod_recipes.model.text import PromptFeatures, TextContext, features_to_context
from aiprod_recipes.model.vae import (
    audio_latent_frames,
    decode_audio,
    decode_video,
    encode_video,
    video_latent_shape,
)
from aiprod_recipes.names import MODEL_AUDIO_RATE
from aiprod_recipes.training.forward import audio_tokens, video_tokens

__all__ = [
    "AUDIO_CHANNELS",
    "AUDIO_MEL_BINS",
    "Decoded",
    "Generated",
    "Request",
    "decode",
    "encode_image",
    "free",
    "generate",
    "sample_latents",
    "sigmas_for",
    "synchronize",
    "write_mp4",
]

AUDIO_CHANNELS = 8
AUDIO_MEL_BINS = 16
_VIDEO_PATCHIFIER = VideoLatentPatchifier(patch_size=1)
_AUDIO_PATCHIFIER = AudioPatchifier(patch_size=1)


@dataclass(frozen=True)
class Request:
    """One sample to generate.

    ``prompt`` / ``negative``: stored-form text features (``model.text.encode_captions``).
    ``image_latent``: the encoded conditioning image [128, 1, H/32, W/32] (image-to-video).
    ``reference``: an IC-LoRA reference latent [128, F', H'/d, W'/d] with d =
    ``reference_downscale``; the target's size must match it.
    """

    prompt: PromptFeatures
    width: int
    height: int
    frames: int
    fps: float = 24.0
    steps: int = 30
    seed: int = 0
    guidance: Guidance = field(default_factory=Guidance)
    negative: PromptFeatures | None = None
    image_latent: torch.Tensor | None = None
    reference: torch.Tensor | None = None
    reference_downscale: int = 1
    with_audio: bool = True

    def __post_init__(self) -> None:
        shape = video_latent_shape(self.frames, self.height, self.width)
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.guidance.uses_cfg and self.negative is None:
            raise ValueError("cfg_scale != 1 needs negative prompt features")
        if self.image_latent is not None and tuple(self.image_latent.shape) != (
                shape[0], 1, *shape[2:]):
            raise ValueError(f"image latent {tuple(self.image_latent.shape)} does not match the "
                             f"first frame of a {self.width}x{self.height} video {shape}")
        if self.reference is not None:
            d = self.reference_downscale
            ref = tuple(self.reference.shape)
            want = (shape[0], shape[1], shape[2] // d, shape[3] // d)
            if ref != want:
                raise ValueError(f"reference latent {ref} does not match the target "
                                 f"{self.width}x{self.height}x{self.frames} / {d}: {want}")

    @property
    def video_shape(self) -> tuple[int, ...]:
        return (1, *video_latent_shape(self.frames, self.height, self.width))

    @property
    def audio_shape(self) -> tuple[int, ...]:
        return (1, AUDIO_CHANNELS, audio_latent_frames(self.frames / self.fps), AUDIO_MEL_BINS)


@dataclass(frozen=True)
class Generated:
    """Sampled latents: video [128, F', H', W'] and audio [8, T, 16] (or None), CPU float32."""

    video: torch.Tensor
    audio: torch.Tensor | None


@dataclass(frozen=True)
class Decoded:
    """Pixels uint8 [F, H, W, 3] and sound [2, samples] float32 at ``sample_rate``."""

    frames: np.ndarray
    audio: np.ndarray | None
    sample_rate: int


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work (timing, freeing); a no-op elsewhere."""
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.synchronize(device)


def free(*modules: torch.nn.Module | None) -> None:
    """Drop components from memory (and the CUDA cache when there is one)."""
    for module in modules:
        if module is not None:
            module.to("meta")
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def sigmas_for(steps: int, video_shape: tuple[int, ...]) -> torch.Tensor:
    """ltx-core's LTX-2 sigma schedule, shifted by the target's latent token count."""
    return LTX2Scheduler().execute(steps=steps, latent=torch.empty(video_shape, device="meta"))


def _place(module: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    p = next(module.parameters())
    return p.device, p.dtype


def _input_dtype(model: torch.nn.Module) -> torch.dtype:
    proj = model.patchify_proj
    weight = getattr(proj, "base_layer", proj).weight
    return weight.dtype if weight.is_floating_point() else torch.bfloat16


@torch.inference_mode()
def encode_image(video_encoder: torch.nn.Module, image: np.ndarray, width: int,
                 height: int) -> torch.Tensor:
    """uint8 RGB [H, W, 3] -> the latent of a one-frame clip [128, 1, H'/32, W'/32], after
    resizing to cover ``width`` x ``height`` and centre-cropping."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image [H, W, 3], got {image.dtype} {image.shape}")
    frame = fit_frames(image[None], Bucket(width, height, 1), None)
    return encode_video(video_encoder, frame)


@dataclass
class _Stream:
    """One modality's token state during sampling."""

    x: torch.Tensor          # current tokens [1, T, D] float32
    clean: torch.Tensor      # conditioning values [1, T, D] (0 where generated)
    mask: torch.Tensor       # denoise mask [1, T] float32: 1 generated, 0 conditioning
    positions: torch.Tensor  # [1, axes, T, 2]

    def modality(self, sigma: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor,
                 dtype: torch.dtype) -> Modality:
        return Modality(latent=self.x.to(dtype), sigma=sigma.reshape(1),
                        timesteps=sigma * self.mask, positions=self.positions,
                        context=context, context_mask=context_mask)


def _video_stream(request: Request, device: torch.device, gen: torch.Generator) -> tuple[
        _Stream, int]:
    """Initial video tokens: noise where generated, clean conditioning elsewhere."""
    shape = request.video_shape
    zeros = torch.zeros(shape)
    tokens, positions = video_tokens(zeros, request.fps)
    target = tokens.shape[1]
    clean = torch.zeros_like(tokens)
    mask = torch.ones(tokens.shape[:2])
    if request.image_latent is not None:
        first, _ = video_tokens(request.image_latent[None].float(), request.fps)
        clean[:, : first.shape[1]] = first
        mask[:, : first.shape[1]] = 0.0
    if request.reference is not None:
        ref, ref_pos = video_tokens(request.reference[None].float(), request.fps,
                                    request.reference_downscale)
        tokens = torch.cat([tokens, ref], dim=1)
        positions = torch.cat([positions, ref_pos], dim=2)
        clean = torch.cat([clean, ref], dim=1)
        mask = torch.cat([mask, torch.zeros(ref.shape[:2])], dim=1)
    noise = torch.randn(tokens.shape, generator=gen, dtype=torch.float32)
    x = noise * mask[..., None] + clean * (1.0 - mask[..., None])
    return _Stream(x.to(device), clean.to(device), mask.to(device), positions.to(device)), target


def _audio_stream(request: Request, device: torch.device, gen: torch.Generator) -> _Stream:
    tokens, positions = audio_tokens(torch.zeros(request.audio_shape))
    noise = torch.randn(tokens.shape, generator=gen, dtype=torch.float32)
    mask = torch.ones(tokens.shape[:2])
    return _Stream(noise.to(device), torch.zeros_like(noise).to(device), mask.to(device),
                   positions.to(device))


def _denoised(model: torch.nn.Module, video: _Stream, audio: _Stream | None,
              sigma: torch.Tensor, ctx: TextContext, perturbations: BatchedPerturbationConfig,
              dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One transformer pass -> denoised tokens x0 = x - v t (float32)."""
    v_mod = video.modality(sigma, ctx.video, ctx.mask, dtype)
    a_mod = None if audio is None else audio.modality(sigma, ctx.audio, ctx.mask, dtype)
    v_vel, a_vel = model(video=v_mod, audio=a_mod, perturbations=perturbations)
    v_x0 = video.x - v_vel.float() * (sigma * video.mask)[..., None]
    a_x0 = None
    if audio is not None:
        a_x0 = audio.x - a_vel.float() * (sigma * audio.mask)[..., None]
    return v_x0, a_x0


def _guided(model: torch.nn.Module, video: _Stream, audio: _Stream | None, sigma: torch.Tensor,
            cond: TextContext, uncond: TextContext | None, guidance: Guidance,
            dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
    plain = BatchedPerturbationConfig.empty(1)
    c_v, c_a = _denoised(model, video, audio, sigma, cond, plain, dtype)
    u_v = u_a = p_v = p_a = None
    if guidance.uses_cfg and uncond is not None:
        u_v, u_a = _denoised(model, video, audio, sigma, uncond, plain, dtype)
    if guidance.uses_stg:
        stg = stg_perturbations(guidance.stg_blocks, 1)
        p_v, p_a = _denoised(model, video, audio, sigma, cond, stg, dtype)
    v = guidance.combine(c_v, u_v, p_v)
    a = None if c_a is None else guidance.combine(c_a, u_a, p_a)
    return v, a


def _context(processor: torch.nn.Module, features: PromptFeatures) -> TextContext:
    device, dtype = _place(processor)
    return features_to_context(processor, [features], device, dtype)


@torch.inference_mode()
def sample_latents(transformer: torch.nn.Module, embeddings_processor: torch.nn.Module,
                   request: Request, progress: bool = False) -> Generated:
    """Sample the latents of one request with the (possibly adapted) transformer;
    ``progress`` shows a bar over the denoising steps (each is one to three passes)."""
    device, _ = _place(transformer)
    dtype = _input_dtype(transformer)
    request.guidance.check_blocks(len(transformer.transformer_blocks))
    with_audio = request.with_audio and transformer.model_type.is_audio_enabled()
    cond = _context(embeddings_processor, request.prompt)
    uncond = None
    if request.guidance.uses_cfg and request.negative is not None:
        uncond = _context(embeddings_processor, request.negative)
    gen = torch.Generator(device="cpu").manual_seed(request.seed)
    video, target = _video_stream(request, device, gen)
    audio = _audio_stream(request, device, gen) if with_audio else None
    sigmas = sigmas_for(request.steps, request.video_shape).to(device)
    stepper = EulerDiffusionStep()
    for i in tqdm(range(len(sigmas) - 1), desc="denoising", unit="step", leave=False,
                  disable=not progress):
        v_x0, a_x0 = _guided(transformer, video, audio, sigmas[i], cond, uncond,
                             request.guidance, dtype)
        for stream, x0 in ((video, v_x0), (audio, a_x0)):
            if stream is None or x0 is None:
                continue
            keep = stream.mask[..., None]
            x0 = x0 * keep + stream.clean * (1.0 - keep)
            stream.x = stepper.step(stream.x, x0, sigmas, i)
    synchronize(device)
    v_tokens = video.x[:, :target].float().cpu()
    v_latent = _VIDEO_PATCHIFIER.unpatchify(v_tokens, VideoLatentShape.from_torch_shape(
        request.video_shape))
    a_latent = None
    if audio is not None:
        b, c, t, f = request.audio_shape
        a_latent = _AUDIO_PATCHIFIER.unpatchify(
            audio.x.float().cpu(), AudioLatentShape(batch=b, channels=c, frames=t, mel_bins=f))[0]
    return Generated(video=v_latent[0], audio=a_latent)


def decode(components: Components, generated: Generated, fps: float, seed: int = 0) -> Decoded:
    """Latents -> uint8 frames and a waveform trimmed to the video's duration."""
    if components.video_decoder is None:
        raise ValueError("decoding needs the video decoder")
    frames = decode_video(components.video_decoder, generated.video, seed=seed).numpy()
    if generated.audio is None or components.audio_decoder is None or components.vocoder is None:
        return Decoded(frames, None, 0)
    waveform, rate = decode_audio(components.audio_decoder, components.vocoder, generated.audio)
    samples = round(len(frames) / fps * rate)
    return Decoded(frames, waveform[:, :samples].numpy(), rate)


def write_mp4(path: Path, decoded: Decoded, fps: float) -> Path:
    """H.264 + AAC mp4 (deterministic bytes for the same pixels and sound)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    encode_mp4(path, list(decoded.frames), fps, decoded.audio,
               sample_rate=decoded.sample_rate or MODEL_AUDIO_RATE)
    return path


def generate(components: Components, request: Request, out: Path,
             progress: bool = False) -> Decoded:
    """Sample, decode and write one request to ``out`` (an .mp4); returns the decoded media."""
    if components.transformer is None or components.embeddings_processor is None:
        raise ValueError("sampling needs the transformer and the embeddings processor")
    generated = sample_latents(components.transformer, components.embeddings_processor, request,
                               progress)
    decoded = decode(components, generated, request.fps, request.seed)
    write_mp4(out, decoded, request.fps)
    return decoded
