"""Caption backends behind one protocol, chosen by the spec's ``caption.backend.type``.

The caption stage walks the clips and asks the backend; it never checks which backend it
has. A new backend (another API, another local model) is a class with these three
methods, in its own module, plus its line in ``BACKENDS`` and its spec Struct in
``spec.py``'s ``Captioner`` union.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

ClipBytes = Callable[[], bytes]
"""Reads a scene clip's mp4 bytes when called (only model backends need them)."""


class CaptionBackendUnavailable(RuntimeError):
    """The backend cannot run here (a missing package, say); the message says what to do."""


class CaptionBackend(Protocol):
    """Where captions come from."""

    reproducible: bool
    """Captions come from this package's code alone (sidecar files), so a code change
    re-makes them; a model's captions are kept across code changes (re-asking a model
    costs time or money, and its answer is not a function of our code)."""

    def key_part(self, source: str) -> str | None:
        """What besides the clip's content and the caption section decides its caption
        (a sidecar's text), recorded in the item key so an edited sidecar re-captions."""
        ...

    def caption(self, item: str, source: str, clip: ClipBytes) -> str | None:
        """The raw caption of scene clip ``item`` (cut from raw clip ``source``), or None
        when there is none. Raises on a failure; see ``is_fatal``."""
        ...

    def is_fatal(self, error: Exception) -> bool:
        """True for errors that will fail every clip alike (a rejected API key, a missing
        package): the stage stops at once instead of recording each clip's failure."""
        ...


def _table() -> dict[str, Callable[..., CaptionBackend]]:
    """Backend type -> class; imported here, when a stage asks, so that a backend's heavy
    client (transformers, google-genai) loads only when that backend runs."""
    from aiprod_recipes.captioning.gemini import GeminiBackend
    from aiprod_recipes.captioning.qwen_omni import QwenOmniBackend
    from aiprod_recipes.captioning.sidecar import SidecarBackend

    return {"sidecar": SidecarBackend, "qwen_omni": QwenOmniBackend, "gemini": GeminiBackend}


def backend_types() -> tuple[str, ...]:
    """Every backend type this package implements."""
    return tuple(_table())


def make_backend(caption: Any, raw_dir: Path, sources: Sequence[str],
                 workdir: Path) -> CaptionBackend:
    """The backend of a spec's ``caption`` section, for the clips of ``sources``."""
    tag = caption.backend.__struct_config__.tag
    return _table()[tag](caption, raw_dir=raw_dir, sources=sources, workdir=workdir)
