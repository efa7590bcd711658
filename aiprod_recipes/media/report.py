"""Damage-tolerant packet decoding and the report of what was damaged.

Real-world clips often carry a few broken packets (a bad upload, a torn download).
Losing a whole clip to one bad packet wastes training data, so decoding skips packets
the decoder rejects, keeps going, and records each one in a ``DecodeReport`` that the
ingest stage can put in its quarantine report or use to reject clips that are mostly
damage.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import av
import av.container

MAX_MESSAGES = 20


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

    @property
    def damaged(self) -> bool:
        """True when anything was skipped, concealed or cut short."""
        return bool(self.bad_packets or self.corrupt_frames or self.read_error)

    def note(self, message: str) -> None:
        """Keep a message, capped so a fully broken file cannot flood the report."""
        if len(self.messages) < MAX_MESSAGES:
            self.messages.append(message)


def _packet_time(packet: av.Packet) -> str:
    """A packet's position for messages; damaged packets may have no timestamp."""
    ts = packet.pts if packet.pts is not None else packet.dts
    if ts is None or packet.time_base is None:
        return "unknown time"
    return f"{float(ts * packet.time_base):.3f}s"


def _why(exc: av.error.FFmpegError) -> str:
    """FFmpeg's short reason ("Invalid data found ...") without errno and call noise."""
    return exc.strerror or str(exc)


def decode_packets(
    container: av.container.InputContainer, stream: av.stream.Stream, report: DecodeReport
) -> Iterator[av.frame.Frame]:
    """Decoded frames of ``stream``, skipping (and reporting) packets that fail.

    A demuxer error ends the stream (the container is no longer readable past it) but
    keeps every frame decoded so far; that is how truncated files degrade gracefully.
    """
    packets = container.demux(stream)
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
            return
        try:
            frames = packet.decode()
        except av.error.FFmpegError as exc:
            report.bad_packets += 1
            report.note(f"bad packet at {_packet_time(packet)}: {_why(exc)}")
            continue
        for frame in frames:
            report.frames_decoded += 1
            if frame.is_corrupt:
                report.corrupt_frames += 1
            yield frame
