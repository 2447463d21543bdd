"""Text clean-up applied to every text part (paper appendix B).

Special tokens in source text would be tokenised as control tokens and corrupt the ChatML
structure (an ``<|im_end|>`` inside a document ends the turn), so they are removed. Stray
symbols are the invisible or broken characters that survive scraping: zero-width marks, the
Unicode replacement character, control characters, and placeholders of other model families.
"""

from __future__ import annotations

import re

from assets.contract.chat_template import QWEN2_VL_SPECIAL_TOKENS

# Any ``<|...|>`` token (Qwen, GPT, InternLM families) and the sentencepiece markers.
_SPECIAL_TOKEN_RE = re.compile(
    r"<\|[A-Za-z0-9_]{1,40}\|>|</?s>|<unk>|<pad>|\[/?INST\]|<<SYS>>|<</SYS>>"
)
# Zero-width and BOM characters, the replacement character, C0/C1 controls except \t \n.
_STRAY_RE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\ufffd\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_TRAILING_WS_RE = re.compile(r"[ \t]+\n")
_MANY_NEWLINES_RE = re.compile(r"\n{3,}")

# Media placeholders used by the sources we ingest; adapters split text on them.
IMAGE_PLACEHOLDERS: tuple[str, ...] = ("<image>", "<ImageHere>", "<img>")
VIDEO_PLACEHOLDERS: tuple[str, ...] = ("<video>",)


def strip_special_tokens(text: str) -> str:
    return _SPECIAL_TOKEN_RE.sub("", text)


def _clean_once(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _STRAY_RE.sub("", text)
    text = strip_special_tokens(text)
    text = _TRAILING_WS_RE.sub("\n", text)
    return _MANY_NEWLINES_RE.sub("\n\n", text)


def clean_text(text: str) -> str:
    """Remove special tokens and stray symbols; normalise line endings and blank runs.

    One pass is not enough: removing a zero-width character inside ``<|image_pad|>``, or a
    token nested in a token (``<|im_<|x|>end|>``), joins the pieces of a new token. So the pass
    repeats until nothing changes; every pass that changes the text shortens it or turns a
    ``\r`` into ``\n``, so the loop ends, and its result is a fixed point:
    ``clean_text(clean_text(x)) == clean_text(x)`` and no special token is left.
    """
    while True:
        cleaned = _clean_once(text)
        if cleaned == text:
            return text
        text = cleaned


def special_tokens_left(text: str) -> list[str]:
    """Special tokens of the target vocabulary, or any other ``clean_text`` removes, still
    present (used by asset checks)."""
    found = [t for t in QWEN2_VL_SPECIAL_TOKENS if t in text]
    return found + [m for m in _SPECIAL_TOKEN_RE.findall(text) if m not in found]
