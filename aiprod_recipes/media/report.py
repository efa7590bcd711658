"""Damage-tolerant packet decoding and the report of what was damaged.

Real-world clips often carry a few broken packets (a bad upload, a torn download).
Losing a whole clip to one bad packet wastes training data, so decoding skips packets
the decoder rejects, keeps going, and records each one in a ``DecodeReport`` that the
ingest stage can put in its quarantine report or use to reject clips that are mostly
damage.

Each problem is also kept as a ``Damage`` event with its time in the clip, so a report can
say where the picture or sound is hurt. The time is exact only when the decoder works one
packet at a time (no frame threads): a frame-threaded decoder reports an error several
packets late, by a number that depends on the machine's core count.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import av
import av.container

MAX_MESSAGES = 20


@dataclass(frozen=True)
class Damage:
    """One damaged spot: seconds from the clip's start (None when the packet carries no
    time), the stream ("video" or "audio"), and what went wrong."""

    time_s: float | None
    stream: str
    what: str

    def as_dict(self) -> dict[str, float | str | None]:
        return {"time_s": self.time_s, "stream": self.stream, "what": self.what}


@dataclass
class DecodeReport:
    """What went wrong (and how much went right) while decoding one stream."""

    bad_packets: int = 0
    corrupt_frames: int = 0
    frames_decoded: int = 0
    # Jumps of more than two nominal frame intervals between consecutive video frames:
    # frames lost to damage the demuxer hid (e.g. MPEG-TS), or variable frame rate.
    gaps: int = 0
    read_error: str | None = None
    messages: list[str] = field(default_factory=list)
    events: list[Damage] = field(default_factory=list)

    @property
    def damaged(self) -> bool:
        """True when anything was skipped, concealed or cut short."""
        return bool(self.bad_packets or self.corrupt_frames or self.read_error)

    def note(self, message: str) -> None:
        """Keep a message, capped so a fully broken file cannot flood the report."""
        if len(self.messages) < MAX_MESSAGES:
            self.messages.append(message)

    def damage(self, time_s: float | None, stream: str, what: str) -> None:
        """Record a damaged spot (capped like the messages)."""
        if len(self.events) < MAX_MESSAGES:
            self.events.append(Damage(None if time_s is None else round(time_s, 6), stream, what))


def _seconds(ts: int | None, time_base: Fraction | None, origin: Fraction) -> float | None:
    """A timestamp in seconds from the clip's start; damaged packets may have no timestamp."""
    if ts is None or time_base is None:
        return None
    return float(ts * time_base - origin)


def _packet_time(packet: av.Packet, origin: Fraction) -> float | None:
    return _seconds(packet.pts if packet.pts is not None else packet.dts, packet.time_base, origin)


def _at(time_s: float | None) -> str:
    return "unknown time" if time_s is None else f"{time_s:.3f}s"


def _why(exc: av.error.FFmpegError) -> str:
    """FFmpeg's short reason ("Invalid data found ...") without errno and call noise."""
    return exc.strerror or str(exc)


def decode_packets(
    container: av.container.InputContainer,
    stream: av.stream.Stream,
    report: DecodeReport,
    origin: Fraction = Fraction(0),
    after_seek: bool = False,
) -> Iterator[av.frame.Frame]:
    """Decoded frames of ``stream``, skipping (and reporting) packets that fail.

    A demuxer error ends the stream (the container is no longer readable past it) but
    keeps every frame decoded so far; that is how truncated files degrade gracefully.
    Damage is timed in seconds after ``origin`` (the clip's t = 0 on the container clock).

    ``after_seek``: the container was just seeked. Containers without an index (MPEG-PS,
    MPEG-TS) land mid-packet or mid-GOP, so until the first clean frame, failures are the
    seek's doing, not damage in the file: they are noted, not counted.
    """
    packets = container.demux(stream)
    last: float | None = None
    settling = after_seek
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.EOFError:
            return
        except av.error.FFmpegError as exc:
            report.read_error = _why(exc)
            report.note(f"container read stopped: {_why(exc)}")
            report.damage(last, stream.type, f"container read stopped: {_why(exc)}")
            return
        at = _packet_time(packet, origin)
        last = at if at is not None else last
        try:
            frames = packet.decode()
        except av.error.FFmpegError as exc:
            if settling:
                report.note(f"packet at {_at(at)} right after a seek did not decode "
                            f"(not counted as damage): {_why(exc)}")
                continue
            report.bad_packets += 1
            report.note(f"bad packet at {_at(at)}: {_why(exc)}")
            report.damage(at, stream.type, f"bad packet: {_why(exc)}")
            continue
        for frame in frames:
            report.frames_decoded += 1
            if frame.is_corrupt and not settling:
                report.corrupt_frames += 1
                report.damage(_seconds(frame.pts, frame.time_base, origin), stream.type,
                              "corrupt frame (decoded with errors)")
            settling = settling and frame.is_corrupt
            yield frame
