"""Pixels and waveforms to LTX-2 latents and back, through ltx-core's VAEs.

Video: uint8 RGB frames [F, H, W, 3] with F = 8k + 1 and H, W multiples of 32 become
[-1, 1] floats [1, 3, F, H, W]; the encoder normalises its output with the checkpoint's
per-channel statistics, so the latent [128, 1 + (F - 1) / 8, H / 32, W / 32] is what the
transformer trains on. Shape rules are checked here because the encoder would otherwise
crop frames with only a log warning.

Audio: ltx-core's AudioProcessor (16 kHz, 64-bin slaney log-mel, n_fft 1024, hop 160) feeds
the audio encoder, which halves time twice: 100 mel frames/s -> 25 latent frames/s. The
waveform is padded with silence or trimmed to exactly the samples of the requested latent
frames, so audio and video latents of a clip cover the same duration; the causal encoder
yields one extra latent frame, which is dropped.

Every function returns float32 (or uint8) tensors on the CPU, ready to store.
"""

from __future__ import annotations

import numpy as np
import torch
from ltx_core.model.audio_vae import AudioDecoder, AudioEncoder, AudioProcessor
from ltx_core.model.audio_vae import decode_audio as ltx_decode_audio
from ltx_core.model.video_vae import TilingConfig, VideoDecoder, VideoEncoder
from ltx_core.model.video_vae import decode_video as ltx_decode_video
from ltx_core.types import Audio, AudioLatentShape

from aiprod_recipes.names import MODEL_AUDIO_RATE

VIDEO_TIME_FACTOR = 8
VIDEO_SPACE_FACTOR = 32
AUDIO_MEL_FRAMES_PER_LATENT = 4


def video_latent_shape(
    frames: int, height: int, width: int, channels: int = 128
) -> tuple[int, ...]:
    """[C, F', H', W'] of the latent of a clip; raises on sizes LTX-2 cannot encode."""
    if frames < 1 or (frames - 1) % VIDEO_TIME_FACTOR:
        raise ValueError(f"frames must be 8k + 1, got {frames}")
    if height % VIDEO_SPACE_FACTOR or width % VIDEO_SPACE_FACTOR or not height or not width:
        raise ValueError(f"height and width must be positive multiples of 32, got {height}x{width}")
    return (
        channels,
        1 + (frames - 1) // VIDEO_TIME_FACTOR,
        height // VIDEO_SPACE_FACTOR,
        width // VIDEO_SPACE_FACTOR,
    )


def audio_latent_frames(duration_s: float) -> int:
    """Audio latent frames for a duration: 25 per second, rounded as ltx-core's sampler does."""
    return AudioLatentShape.from_duration(batch=1, duration=duration_s).frames


def _module_place(module: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    parameter = next(module.parameters())
    return parameter.device, parameter.dtype


def frames_to_pixels(frames: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 [F, H, W, 3] -> float32 [1, 3, F, H, W] in [-1, 1]."""
    tensor = torch.as_tensor(np.asarray(frames)) if isinstance(frames, np.ndarray) else frames
    if tensor.dtype != torch.uint8 or tensor.ndim != 4 or tensor.shape[-1] != 3:
        raise ValueError(
            f"expected uint8 frames [F, H, W, 3], got {tensor.dtype} {tuple(tensor.shape)}"
        )
    video_latent_shape(*tensor.shape[:3])
    pixels = tensor.permute(3, 0, 1, 2).unsqueeze(0).to(torch.float32)
    return pixels / 127.5 - 1.0


@torch.inference_mode()
def encode_video(
    encoder: VideoEncoder,
    frames: torch.Tensor | np.ndarray,
    tiling: TilingConfig | None = None,
) -> torch.Tensor:
    """uint8 frames [F, H, W, 3] -> normalised latent [128, F', H/32, W/32] (float32, CPU).

    ``tiling`` runs ltx-core's tiled encoder (bounded memory for large clips; tiles are at
    least 64 px / 16 frames, and blending makes results differ slightly from untiled).
    """
    device, dtype = _module_place(encoder)
    pixels = frames_to_pixels(frames)
    if tiling is None:
        latent = encoder(pixels.to(device=device, dtype=dtype))
    else:
        latent = encoder.tiled_encode(pixels, tiling)
    return latent[0].float().cpu()


@torch.inference_mode()
def decode_video(
    decoder: VideoDecoder,
    latent: torch.Tensor,
    tiling: TilingConfig | None = None,
    seed: int | None = None,
) -> torch.Tensor:
    """Latent [128, F', H', W'] -> uint8 frames [8(F'-1)+1, 32H', 32W', 3] (CPU)."""
    if latent.ndim != 4:
        raise ValueError(f"expected a latent [C, F', H', W'], got {tuple(latent.shape)}")
    device, dtype = _module_place(decoder)
    generator = None if seed is None else torch.Generator(device=device).manual_seed(seed)
    batch = latent.unsqueeze(0).to(device=device, dtype=dtype)
    chunks = ltx_decode_video(batch, decoder, tiling_config=tiling, generator=generator)
    return torch.cat([chunk.cpu() for chunk in chunks], dim=0)


def _stereo(waveform: torch.Tensor | np.ndarray) -> torch.Tensor:
    """float [C, T] -> float32 [2, T]: mono is duplicated; the encoder takes two channels."""
    tensor = torch.as_tensor(np.asarray(waveform) if isinstance(waveform, np.ndarray) else waveform)
    if tensor.ndim != 2 or tensor.shape[0] not in (1, 2):
        raise ValueError(f"expected a waveform [1 or 2, T], got {tuple(tensor.shape)}")
    tensor = tensor.to(torch.float32)
    return tensor.expand(2, -1).contiguous() if tensor.shape[0] == 1 else tensor


def fit_samples(waveform: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Trim, or pad with trailing silence, to exactly ``num_samples``."""
    if waveform.shape[-1] >= num_samples:
        return waveform[..., :num_samples]
    return torch.nn.functional.pad(waveform, (0, num_samples - waveform.shape[-1]))


@torch.inference_mode()
def encode_audio(
    audio_encoder: AudioEncoder,
    waveform: torch.Tensor | np.ndarray,
    num_latent_frames: int,
    sample_rate: int = MODEL_AUDIO_RATE,
) -> torch.Tensor:
    """float waveform [C, T] -> normalised latent [8, num_latent_frames, 16] (float32, CPU).

    Non-16 kHz input is resampled by ltx-core's AudioProcessor first.
    """
    if num_latent_frames < 1:
        raise ValueError(f"num_latent_frames must be >= 1, got {num_latent_frames}")
    device, dtype = _module_place(audio_encoder)
    processor = AudioProcessor(
        target_sample_rate=audio_encoder.sample_rate,
        mel_bins=audio_encoder.mel_bins,
        mel_hop_length=audio_encoder.mel_hop_length,
        n_fft=audio_encoder.n_fft,
    ).to(device)
    audio = processor.resample_audio(Audio(waveform=_stereo(waveform), sampling_rate=sample_rate))
    samples = num_latent_frames * AUDIO_MEL_FRAMES_PER_LATENT * audio_encoder.mel_hop_length
    fitted = fit_samples(audio.waveform, samples).unsqueeze(0).to(device)
    mel = processor.waveform_to_mel(Audio(waveform=fitted, sampling_rate=audio.sampling_rate))
    latent = audio_encoder(mel.to(dtype=dtype))
    return latent[0, :, :num_latent_frames].float().cpu()


@torch.inference_mode()
def decode_audio(
    audio_decoder: AudioDecoder,
    vocoder: torch.nn.Module,
    latent: torch.Tensor,
) -> tuple[torch.Tensor, int]:
    """Latent [8, T', 16] -> (stereo waveform [2, samples] float32 CPU, sample rate)."""
    if latent.ndim != 3:
        raise ValueError(f"expected a latent [C, T', mel], got {tuple(latent.shape)}")
    device, dtype = _module_place(audio_decoder)
    audio = ltx_decode_audio(
        latent.unsqueeze(0).to(device=device, dtype=dtype), audio_decoder, vocoder
    )
    return audio.waveform.float().cpu(), int(audio.sampling_rate)
