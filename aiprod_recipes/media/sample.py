"""Generate the small synthetic sample dataset that ships in ``data/sample/``.

A fresh clone must run the whole pipeline with no download, so the sample clips are
synthesized: six short 256x192 clips at 24 fps, each with different moving content and a
sound that follows the motion (so audio-video alignment is learnable), one with a hard
cut so that scene splitting has work to do, and a caption ``.txt`` beside each clip.
The output is byte-identical from run to run (see ``encode_mp4``), so DVC sees no change.

Run: ``python -m aiprod_recipes.media.sample [OUT_DIR]`` (default ``data/sample``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aiprod_recipes.media import synth
from aiprod_recipes.media.encode import encode_mp4

WIDTH, HEIGHT, FPS, SAMPLE_RATE = 256, 192, 24, 16000
CRF, AUDIO_BITRATE = 26, 48_000
DEFAULT_OUT = Path("data/sample")


@dataclass(frozen=True)
class Clip:
    """One sample clip: how to draw frame ``t``, its soundtrack, and its caption."""

    name: str
    duration_s: float
    draw: Callable[[float], np.ndarray]
    sound: Callable[[np.ndarray], np.ndarray]  # sample times -> [C, T]
    caption: str


XS, YS = synth.grid(WIDTH, HEIGHT)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# 1. bouncing ball: a thump at each floor contact.
BOUNCES, BALL_DUR = 3, 2.5


def _ball(t: float) -> np.ndarray:
    canvas = synth.vertical_gradient(WIDTH, HEIGHT, (40, 90, 200), (170, 210, 250))
    canvas[160:] = (60, 140, 60)
    height = abs(np.sin(np.pi * BOUNCES * t / BALL_DUR)) * 110
    synth.paint_disc(canvas, 30 + 196 * t / BALL_DUR, 146 - height, 14, (220, 40, 40))
    return synth.to_uint8(canvas)


def _ball_sound(t: np.ndarray) -> np.ndarray:
    at = [k * BALL_DUR / BOUNCES for k in range(BOUNCES + 1)]
    return synth.hits(t, at, 70.0, 0.08, 0.6, _rng(1))[None]


# 2. sunrise: the tone rises with the sun.
def _sunrise(t: float) -> np.ndarray:
    a = t / 3.0
    top = (int(20 + 60 * a), int(20 + 80 * a), int(60 + 120 * a))
    canvas = synth.vertical_gradient(WIDTH, HEIGHT, top, (250, int(120 + 60 * a), 60))
    synth.paint_disc(canvas, 128, 200 - 120 * a, 26, (255, 230, 90))
    canvas[170:] = (30, 30, 50)
    return synth.to_uint8(canvas)


def _sunrise_sound(t: np.ndarray) -> np.ndarray:
    return synth.chirp(t, 220.0, 660.0, 0.3)[None]


# 3. scrolling checkerboard: a tick each time a column edge crosses the centre.
SQUARE, SPEED = 32, 64.0


def _checker(t: float) -> np.ndarray:
    shift = SPEED * t
    cells = (np.floor((XS + shift) / SQUARE) + np.floor(YS / SQUARE)) % 2
    return np.repeat((cells * 235 + 10).astype(np.uint8)[..., None], 3, axis=2)


def _checker_sound(t: np.ndarray) -> np.ndarray:
    at = [k * SQUARE / SPEED for k in range(5)]
    return synth.hits(t, at, 1800.0, 0.01, 0.5, _rng(3), noise=0.8)[None]


# 4. hard cut: a humming green square, then snow falling on magenta with hiss.
CUT_AT, CUT_DUR = 1.5, 3.0
FLAKES = _rng(4).uniform(0, 1, size=(40, 3))


def _cut(t: float) -> np.ndarray:
    if t < CUT_AT:
        canvas = np.full((HEIGHT, WIDTH, 3), 35, np.float32)
        synth.paint(canvas, synth.square(XS, YS, 128, 96, 40, 1.2 * t), (40, 200, 70))
        return synth.to_uint8(canvas)
    canvas = synth.vertical_gradient(WIDTH, HEIGHT, (150, 30, 140), (60, 10, 80))
    for fx, fy, fs in FLAKES:
        y = (fy * HEIGHT + (40 + 40 * fs) * (t - CUT_AT)) % HEIGHT
        synth.paint_disc(canvas, fx * WIDTH, y, 2 + 2 * fs, (250, 250, 250))
    return synth.to_uint8(canvas)


def _cut_sound(t: np.ndarray) -> np.ndarray:
    hum = synth.tone(t, 110.0, 0.35) * (t < CUT_AT)
    return (hum + synth.hiss(t, 0.25, _rng(5)) * (t >= CUT_AT))[None]


# 5. orbits: three dots, three pitches, panned by each dot's x position (stereo).
ORBITS = (
    (50.0, 1.0, (255, 80, 80), 262.0),
    (75.0, -0.7, (80, 255, 120), 330.0),
    (30.0, 1.6, (90, 140, 255), 392.0),
)


def _orbit_pos(radius: float, speed: float, t: np.ndarray | float) -> tuple:
    angle = 2 * np.pi * speed * np.asarray(t) / 2.5
    return 128 + radius * np.cos(angle), 96 + radius * np.sin(angle)


def _orbits(t: float) -> np.ndarray:
    canvas = np.zeros((HEIGHT, WIDTH, 3), np.float32)
    for radius, speed, color, _ in ORBITS:
        x, y = _orbit_pos(radius, speed, t)
        synth.paint_disc(canvas, float(x), float(y), 9, color)
    return synth.to_uint8(canvas)


def _orbits_sound(t: np.ndarray) -> np.ndarray:
    out = np.zeros((2, t.shape[0]))
    for radius, speed, _, freq in ORBITS:
        pan = (_orbit_pos(radius, speed, t)[0] - 128 + 80) / 160  # 0 = left, 1 = right
        voice = synth.tone(t, freq, 0.15)
        out += np.stack([voice * np.sqrt(1 - pan), voice * np.sqrt(pan)])
    return out


# 6. pulse: a cyan circle breathing over a drifting rainbow; loudness follows its size.
def _pulse_radius(t: np.ndarray | float) -> np.ndarray:
    return 30 + 22 * np.sin(2 * np.pi * 1.5 * np.asarray(t))


def _pulse(t: float) -> np.ndarray:
    hue = (XS / WIDTH + 0.2 * t) * 2 * np.pi
    canvas = np.stack([np.sin(hue + k * 2.094) * 70 + 110 for k in range(3)], axis=-1)
    synth.paint_disc(canvas, 128, 96, float(_pulse_radius(t)), (40, 230, 230))
    return synth.to_uint8(canvas.astype(np.float32))


def _pulse_sound(t: np.ndarray) -> np.ndarray:
    return (synth.tone(t, 330.0, 0.4) * (_pulse_radius(t) - 8) / 44)[None]


CLIPS = (
    Clip(
        "bouncing_ball",
        BALL_DUR,
        _ball,
        _ball_sound,
        "A red ball bounces from left to right across a blue sky above green grass, "
        "touching the ground three times. A dull thump sounds at every bounce.",
    ),
    Clip(
        "sunrise",
        3.0,
        _sunrise,
        _sunrise_sound,
        "A yellow sun rises over a dark horizon while the sky brightens from night blue "
        "to orange. A smooth tone glides upward in pitch as the sun climbs.",
    ),
    Clip(
        "checker_scroll",
        2.0,
        _checker,
        _checker_sound,
        "A black and white checkerboard scrolls steadily to the left. A sharp click "
        "ticks twice per second, each time a column of squares passes the centre.",
    ),
    Clip(
        "scene_cut",
        CUT_DUR,
        _cut,
        _cut_sound,
        "A green square slowly rotates on a dark grey background with a low electric "
        "hum, then a hard cut shows white snowflakes falling on a purple gradient, "
        "accompanied by soft hissing noise.",
    ),
    Clip(
        "orbits",
        2.5,
        _orbits,
        _orbits_sound,
        "Three coloured dots, red, green and blue, circle the centre of a black screen "
        "at different speeds. Each dot sings its own steady note, which pans left and "
        "right as the dot moves.",
    ),
    Clip(
        "pulse",
        2.0,
        _pulse,
        _pulse_sound,
        "A cyan circle swells and shrinks in the middle of a slowly drifting rainbow "
        "gradient. A humming tone grows louder as the circle grows and fades as it "
        "shrinks.",
    ),
)


def _frames(clip: Clip) -> Iterator[np.ndarray]:
    for k in range(round(clip.duration_s * FPS)):
        yield clip.draw(k / FPS)


def _audio(clip: Clip) -> np.ndarray:
    pcm = clip.sound(synth.times(clip.duration_s, SAMPLE_RATE))
    return synth.fade_edges(pcm, SAMPLE_RATE).astype(np.float32)


def write_clip(clip: Clip, out_dir: Path) -> Path:
    """Encode one clip and its caption into ``out_dir``; returns the mp4 path."""
    dest = out_dir / f"{clip.name}.mp4"
    encode_mp4(
        dest, _frames(clip), FPS, _audio(clip), SAMPLE_RATE, crf=CRF, audio_bitrate=AUDIO_BITRATE
    )
    (out_dir / f"{clip.name}.txt").write_text(clip.caption + "\n", encoding="utf-8")
    return dest


def generate(out_dir: str | Path = DEFAULT_OUT) -> list[Path]:
    """Write every sample clip (mp4 + caption txt) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [write_clip(clip, out) for clip in CLIPS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the sample clips and their captions.")
    parser.add_argument("out_dir", nargs="?", default=str(DEFAULT_OUT),
                        help=f"where to write them (default {DEFAULT_OUT})")
    for path in generate(parser.parse_args(argv).out_dir):
        print(f"{path}  {path.stat().st_size / 1024:.1f} kB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
