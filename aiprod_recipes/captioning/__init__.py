"""Caption backends as plain functions: sidecar files, Gemini, local Qwen2.5-Omni, cleanup.

Heavy libraries (torch, transformers, google-genai) are imported only when a backend runs,
so importing this package stays cheap for stages that never caption.
"""

from aiprod_recipes.captioning.cleanup import clean_caption, with_trigger
from aiprod_recipes.captioning.gemini import (
    GeminiClient,
    GeminiClipError,
    GeminiError,
    GeminiKeyError,
)
from aiprod_recipes.captioning.qwen_omni import QwenOmni, QwenOmniError, load_qwen_omni
from aiprod_recipes.captioning.sidecar import CaptionFileError, load_sidecar_captions

__all__ = [
    "CaptionFileError",
    "GeminiClient",
    "GeminiClipError",
    "GeminiError",
    "GeminiKeyError",
    "QwenOmni",
    "QwenOmniError",
    "clean_caption",
    "load_qwen_omni",
    "load_sidecar_captions",
    "with_trigger",
]
