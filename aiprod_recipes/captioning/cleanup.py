"""Turn a chat model's answer into a training caption.

Chat-tuned captioners wrap the description in conversation: "Sure! Here's a detailed
description of the video:", markdown headers and bullet lists, bold labels, quotes around
the whole answer, "Let me know if you need anything else!". None of it describes the clip,
and a text encoder trained on it learns to expect it in prompts, so it is stripped before
the caption reaches the embed stage. The rules only remove what sits around the
description (its start, its end, markup); words inside it are left alone.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"^\s*```[\w-]*\s*$", re.MULTILINE)
_HEADER = re.compile(r"^\s{0,3}#{1,6}\s+.*$")
_RULE = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$")
_BULLET = re.compile(r"^\s*(?:[-*+•‣◦▪]|\d{1,3}[.)])\s+")
_END_PUNCT = ".!?…:;\"'”’)"

_ACK = re.compile(
    r"^(?:sure|certainly|of course|absolutely|okay|ok|alright|great|no problem)\b"
    r"(?:\s+thing)?(?:[,!.]+\s*|\s*[-–—]\s*|\s+(?=here\b))",
    re.IGNORECASE,
)
_LEAD_IN = re.compile(
    r"^(?:here(?:'s|’s| is| are)|below is|the following is|this is)\b[^:\n]{0,160}:\s*",
    re.IGNORECASE,
)
_LEAD_IN_SENTENCE = re.compile(
    r"^here(?:'s|’s| is)\b[^.!:\n]{0,120}\b(?:caption|description|summary)\b[^.!:\n]{0,60}[.!]\s+",
    re.IGNORECASE,
)
_LABEL = re.compile(
    r"^(?:the\s+)?(?:(?:detailed|short|brief|final|video|clip|scene)\s+){0,2}"
    r"(?:caption|description|summary|transcript)\s*[:：]\s*",
    re.IGNORECASE,
)
_TRAILER = re.compile(
    r"(?:(?<=[.!?…\"”)])\s+|^)(?:let me know\b|i hope (?:this|that|it)\b|hope (?:this|that)\b"
    r"|feel free\b|if you(?:'d| would) like\b|would you like\b|is there anything\b"
    r"|do you want me\b|please let me know\b|i can also\b|should i\b)"
    r".*$",
    re.IGNORECASE | re.DOTALL,
)
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC = re.compile(r"(?<![\w*])([*_])(?=\S)(.+?)(?<=\S)\1(?![\w*])")
_STRAY_STARS = re.compile(r"\*{1,3}")
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "«": "»", "`": "`"}


def clean_caption(text: str) -> str:
    """Strip preambles, markdown, wrapping quotes and closing remarks; one-line output."""
    text = _FENCE.sub("", text.replace("\r\n", "\n"))
    text = _join_lines(text)
    text = _strip_emphasis(text)
    previous = None
    while previous != text:
        previous = text
        text = _strip_wrapping_quotes(text.strip())
        text = _ACK.sub("", text)
        text = _LEAD_IN.sub("", text)
        text = _LEAD_IN_SENTENCE.sub("", text)
        text = _LABEL.sub("", text)
        text = _TRAILER.sub("", text).strip()
    return " ".join(text.split())


def with_trigger(caption: str, trigger_word: str) -> str:
    """Prepend the trigger word (LoRA activation token) unless the caption starts with it."""
    trigger = trigger_word.strip()
    if not trigger:
        return caption
    if re.match(re.escape(trigger) + r"(?![\w])", caption):
        return caption
    return f"{trigger} {caption}".strip()


def _join_lines(text: str) -> str:
    """Drop headers and rules; make each bullet a sentence; join everything with spaces.

    A bullet list of observations reads as a run of sentences once each item ends with a
    full stop, which is the shape the text encoder sees in prompts.
    """
    parts: list[str] = []
    for raw in text.split("\n"):
        line = raw.strip()
        if not line or _HEADER.match(line) or _RULE.match(line):
            continue
        if _BULLET.match(line):
            line = _BULLET.sub("", line, count=1).strip()
            if line and not line.endswith(tuple(_END_PUNCT)):
                line += "."
        parts.append(line)
    return " ".join(parts)


def _strip_emphasis(text: str) -> str:
    text = _BOLD.sub(r"\2", text)
    text = _ITALIC.sub(r"\2", text)
    text = _STRAY_STARS.sub("", text)
    return text.replace("`", "")


def _strip_wrapping_quotes(text: str) -> str:
    """Remove one pair of quotes around the whole text, when nothing inside reuses them."""
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] == _QUOTES[text[0]]:
        inner = text[1:-1]
        if text[0] not in inner and text[-1] not in inner:
            return inner.strip()
    return text
