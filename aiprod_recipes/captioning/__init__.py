"""Caption backends: sidecar files, a local Qwen2.5-Omni, the Gemini API; and the cleanup of
model answers. ``backends`` maps the spec's ``caption.backend.type`` to its backend.

Nothing is imported here: torch, transformers and google-genai load only when a backend
that needs them runs.
"""
