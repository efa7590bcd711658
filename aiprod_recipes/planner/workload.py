"""The tokens one training micro-batch puts through the transformer, for the largest bucket.

Memory peaks on the largest bucket, so that is the one planned for. Per sample: video
tokens F' x H' x W' of the latent (F' = 1 + (F - 1) / 8, H' = H / 32, W' = W / 32), the
IC-LoRA reference appended at ``1 / reference.downscale`` of the resolution
(video_to_video), audio tokens at 25 per second of the clip when the strategy trains audio,
and ``text_encoder.max_tokens`` text tokens (the connectors keep the padded length).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiprod_recipes.spec import Bucket, Spec, VideoToVideo

__all__ = ["Workload", "bucket_workload", "largest"]

@dataclass(frozen=True)
class Workload:
    """Token counts of one micro-batch (per sample, and the batch size)."""

    bucket: Bucket
    batch_size: int
    video: int
    reference: int
    audio: int
    text: int

    @property
    def video_total(self) -> int:
        """Video-stream tokens per sample: the target and any reference appended to it."""
        return self.video + self.reference

    def label(self) -> str:
        b = self.bucket
        parts = [f"{b.width}x{b.height}x{b.frames}", f"{self.video} video tokens"]
        if self.reference:
            parts.append(f"{self.reference} reference tokens")
        if self.audio:
            parts.append(f"{self.audio} audio tokens")
        parts.append(f"{self.text} text tokens")
        if self.batch_size > 1:
            parts.append(f"batch {self.batch_size}")
        return ", ".join(parts)


def _video_tokens(bucket: Bucket, downscale: int = 1) -> int:
    from aiprod_recipes.model.vae import VIDEO_SPACE_FACTOR, VIDEO_TIME_FACTOR

    frames = 1 + (bucket.frames - 1) // VIDEO_TIME_FACTOR
    return frames * (bucket.height // downscale // VIDEO_SPACE_FACTOR) * (
        bucket.width // downscale // VIDEO_SPACE_FACTOR)


def _audio_tokens(frames: int, fps: float) -> int:
    from aiprod_recipes.model.vae import audio_latent_frames

    return audio_latent_frames(frames / fps)


def bucket_workload(spec: Spec, bucket: Bucket) -> Workload:
    """The tokens of one micro-batch of ``bucket`` under ``spec``."""
    reference = 0
    if isinstance(spec.strategy, VideoToVideo):
        reference = _video_tokens(bucket, spec.reference.downscale)
    audio = _audio_tokens(bucket.frames, spec.ingest.fps) if spec.strategy.with_audio else 0
    return Workload(bucket, spec.train.batch_size, _video_tokens(bucket), reference, audio,
                    spec.text_encoder.max_tokens)


def largest(spec: Spec) -> Workload:
    """The bucket with the most tokens (the memory peak)."""
    loads = [bucket_workload(spec, b) for b in spec.video.buckets]
    return max(loads, key=lambda w: (w.video_total + w.audio, w.bucket.frames))
