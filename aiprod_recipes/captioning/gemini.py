"""Captions from the Gemini API through Google's google-genai client.

The API key lives only in the environment variable the spec names. It is read when a clip
is captioned (so a spec, a provenance file or dvc.lock never holds it), handed to the
client, and kept out of every message this module writes: logs, exceptions and reprs name
the variable, never its value. Server text quoted in an error is scrubbed of the key too,
because a proxy in front of the API may echo request headers back.

Failures are sorted by what the caller can do about them:
- `GeminiKeyError`: no key, or the key was rejected (401/403) — nothing will work, stop;
- `GeminiClipError`: this clip failed (bad request, blocked, empty answer, or still rate
  limited / failing after the retries) — record it and go on with the next clip.
Rate limits (429), server errors (5xx) and dropped connections are retried with capped
exponential backoff and jitter, so a burst of clips does not hammer a struggling endpoint in
lock-step.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from aiprod_recipes.spec import GeminiCaptioner

log = logging.getLogger(__name__)

T = TypeVar("T")

# Inline media must fit a 20 MB request; base64 makes bytes 4/3 larger, plus the prompt.
INLINE_MAX_BYTES = 14 * 1024 * 1024
# Pinned: google-genai releases differ in their default (v1 or v1beta), and the Files API
# used for large clips is served under v1beta.
API_VERSION = "v1beta"
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
AUTH_STATUS = frozenset({401, 403})


class GeminiError(RuntimeError):
    """Base class of Gemini captioning errors (messages never contain the API key)."""


class GeminiKeyError(GeminiError):
    """The API key is missing from the environment or the API rejected it."""


class GeminiClipError(GeminiError):
    """One clip could not be captioned; other clips may still succeed."""

    def __init__(self, clip: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{clip}: {message}")
        self.clip = clip
        self.status = status


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with jitter: delay_n = U(1 - jitter, 1) * min(cap, base * 2^n)."""

    base_s: float = 1.0
    cap_s: float = 60.0
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random, retry_after_s: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0-based); a server hint is honoured
        up to the cap."""
        wait = min(self.cap_s, self.base_s * (2.0 ** attempt))
        wait *= 1.0 - self.jitter * rng.random()
        if retry_after_s is not None:
            wait = max(wait, min(self.cap_s, retry_after_s))
        return wait


@dataclass(frozen=True)
class GeminiClient:
    """Captions clips with one Gemini model; holds the variable name, never the key."""

    model: str = "gemini-2.5-flash"
    api_key_env: str = "GEMINI_API_KEY"
    base_url: str = ""
    max_retries: int = 5
    timeout_s: float = 120.0
    inline_max_bytes: int = INLINE_MAX_BYTES
    backoff: Backoff = field(default_factory=Backoff)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    @classmethod
    def from_spec(cls, backend: GeminiCaptioner, **overrides: Any) -> GeminiClient:
        """Build from the spec's `caption.backend` (type = "gemini")."""
        return cls(model=backend.model, api_key_env=backend.api_key_env,
                   base_url=backend.base_url, max_retries=backend.max_retries,
                   timeout_s=backend.timeout_s, **overrides)

    def check_key(self) -> None:
        """Fail early (before any clip) when the key variable is unset or empty."""
        self._api_key()

    def caption(self, video: Path | bytes, instruction: str, *, mime_type: str | None = None,
                clip: str | None = None) -> str:
        """The model's answer for one clip (raw text; cleanup is the caller's step)."""
        from google.genai import types

        name = clip or (video.name if isinstance(video, Path) else "clip")
        data = video.read_bytes() if isinstance(video, Path) else bytes(video)
        mime = mime_type or _guess_mime(video)
        key = self._api_key()
        client = self._client(key)
        uploaded = None
        try:
            if len(data) <= self.inline_max_bytes:
                media = types.Part.from_bytes(data=data, mime_type=mime)
            else:
                uploaded = self._upload(client, data, mime, name, key)
                media = types.Part.from_uri(file_uri=uploaded.uri, mime_type=mime)
            contents = [types.Content(role="user", parts=[media, types.Part.from_text(
                text=instruction)])]
            response = self._retrying(
                lambda: client.models.generate_content(model=self.model, contents=contents),
                name, key)
            return _response_text(response, name)
        except GeminiError:
            raise
        except Exception as exc:  # anything else the client raises is this clip's failure
            raise GeminiClipError(name, _scrub(f"{type(exc).__name__}: {exc}", key)) from None
        finally:
            if uploaded is not None:
                self._delete_quietly(client, uploaded.name, name, key)
            client.close()

    # ------------------------------------------------------------------ internals

    def _api_key(self) -> str:
        key = os.environ.get(self.api_key_env, "").strip()
        if not key:
            raise GeminiKeyError(f"the Gemini API key is not set: export {self.api_key_env}=... "
                                 "(caption.backend.api_key_env names the variable)")
        return key

    def _client(self, key: str) -> Any:
        from google import genai
        from google.genai import types

        options = types.HttpOptions(
            base_url=self.base_url or None,
            api_version=API_VERSION,
            timeout=int(self.timeout_s * 1000),
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        return genai.Client(api_key=key, vertexai=False, http_options=options)

    def _retrying(self, request: Callable[[], T], clip: str, key: str) -> T:
        """Run one request; retry 429/5xx/transport errors; map the rest to our errors."""
        from google.genai import errors

        transport_errors = _transport_errors()
        attempt = 0
        while True:
            try:
                return request()
            except errors.APIError as exc:
                status = int(exc.code or 0)
                detail = _scrub(f"{exc.status or ''} {exc.message or ''}".strip(), key)
                if status in AUTH_STATUS:
                    raise GeminiKeyError(
                        f"the Gemini API rejected the key in ${self.api_key_env} "
                        f"(HTTP {status}: {detail})") from None
                if status not in RETRY_STATUS:
                    raise GeminiClipError(clip, f"HTTP {status}: {detail}", status) from None
                problem, hint = f"HTTP {status}: {detail}", _retry_after(exc)
            except transport_errors as exc:
                status, hint = None, None
                problem = _scrub(f"{type(exc).__name__}: {exc}", key)
            if attempt >= self.max_retries:
                raise GeminiClipError(clip, f"gave up after {attempt} retries: {problem}",
                                      status) from None
            wait = self.backoff.delay(attempt, self.rng, hint)
            attempt += 1
            log.warning("gemini %s: %s; retry %d/%d in %.1f s", clip, problem, attempt,
                        self.max_retries, wait)
            self.sleep(wait)

    def _upload(self, client: Any, data: bytes, mime: str, clip: str, key: str) -> Any:
        """Large clips go through the Files API; wait until the file is ACTIVE."""
        import io

        from google.genai import types

        uploaded = self._retrying(
            lambda: client.files.upload(file=io.BytesIO(data),
                                        config=types.UploadFileConfig(mime_type=mime)),
            clip, key)
        waited = 0.0
        while uploaded.state == types.FileState.PROCESSING:
            if waited > self.timeout_s:
                raise GeminiClipError(clip, f"uploaded file still processing after {waited:.0f} s")
            self.sleep(1.0)
            waited += 1.0
            file_name = uploaded.name
            uploaded = self._retrying(lambda n=file_name: client.files.get(name=n), clip, key)
        if uploaded.state == types.FileState.FAILED:
            raise GeminiClipError(clip, "the API failed to process the uploaded clip")
        return uploaded

    def _delete_quietly(self, client: Any, file_name: str, clip: str, key: str) -> None:
        """Uploaded files expire on their own; a failed delete is logged, not raised."""
        try:
            client.files.delete(name=file_name)
        except Exception as exc:
            log.warning("gemini %s: could not delete the uploaded file: %s", clip,
                        _scrub(type(exc).__name__, key))


def _transport_errors() -> tuple[type[Exception], ...]:
    """Connection/timeout errors of the HTTP library google-genai runs on (httpx, or its
    fork httpx2, depending on the release); both are retried like a 503."""
    import importlib

    found: list[type[Exception]] = []
    for name in ("httpx", "httpx2"):
        try:
            found.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def _response_text(response: Any, clip: str) -> str:
    text = (getattr(response, "text", None) or "").strip()
    if text:
        return text
    feedback = getattr(response, "prompt_feedback", None)
    block = getattr(feedback, "block_reason", None)
    candidates = getattr(response, "candidates", None) or []
    finish = getattr(candidates[0], "finish_reason", None) if candidates else None
    raise GeminiClipError(clip, f"empty answer (block reason: {block}, finish reason: {finish})")


def _retry_after(exc: Any) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    value = headers.get("retry-after") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _guess_mime(video: Path | bytes) -> str:
    if isinstance(video, Path):
        guess, _ = mimetypes.guess_type(video.name)
        if guess and guess.startswith("video/"):
            return guess
    return "video/mp4"


def _scrub(text: str, key: str) -> str:
    return text.replace(key, "***") if key else text


class GeminiBackend:
    """Captions from the Gemini API (``caption.backend.type = "gemini"``). The client is
    made, and the key checked, at the first clip that needs a caption."""

    reproducible = False

    def __init__(self, caption: Any, **_: Any) -> None:
        self.backend = caption.backend
        self.instruction = caption.instruction
        self._client: GeminiClient | None = None

    def key_part(self, source: str) -> str | None:
        return None

    def caption(self, item: str, source: str, clip: Any) -> str | None:
        if self._client is None:
            self._client = _checked_client(self.backend)
        return self._client.caption(clip(), self.instruction, mime_type="video/mp4", clip=item)

    def is_fatal(self, error: Exception) -> bool:
        from aiprod_recipes.captioning.backends import CaptionBackendUnavailable

        return isinstance(error, GeminiKeyError | ImportError | CaptionBackendUnavailable)


def _checked_client(backend: GeminiCaptioner) -> GeminiClient:
    """A client whose package is installed and whose key variable is set."""
    from aiprod_recipes.captioning.backends import CaptionBackendUnavailable

    try:
        import google.genai  # noqa: F401
    except ImportError as e:
        raise CaptionBackendUnavailable(
            'caption.backend.type = "gemini" needs the google-genai package: '
            "pip install 'aiprod-recipes[gemini]'") from e
    client = GeminiClient.from_spec(backend)
    client.check_key()
    return client
