"""The one exception type the media layer raises.

Ingest quarantines bad inputs instead of crashing, so every failure that is the input's
fault (empty, truncated, not media, no video, undecodable) surfaces as a ``MediaError``
whose ``reason`` is a short sentence fit for a quarantine report.  Bugs in our own code
still raise their ordinary exceptions, so they are never mistaken for bad clips.
"""

from __future__ import annotations

from pathlib import Path


class MediaError(Exception):
    """An input clip that cannot be used, with a human-readable ``reason``."""

    def __init__(self, reason: str, path: str | Path | None = None) -> None:
        self.reason = reason
        self.path = None if path is None else str(path)
        super().__init__(reason if path is None else f"{path}: {reason}")
