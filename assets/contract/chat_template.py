"""Qwen2-VL ChatML rendering, written out in Python and checked against the model's template.

The Jinja template shipped with Qwen2-VL-Instruct lives next to this file; the tiny model's
processor is given that exact template, and tests assert that ``render_chatml`` produces the
same string as ``processor.apply_chat_template(..., tokenize=False)``. Rendering in Python
keeps token counting and packing free of a Jinja round-trip per sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
IMAGE_PAD, VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"
IMAGE_PLACEHOLDER = VISION_START + IMAGE_PAD + VISION_END
VIDEO_PLACEHOLDER = VISION_START + VIDEO_PAD + VISION_END

# Every special token of the Qwen2 / Qwen2-VL vocabulary, in the model's id order.
QWEN2_VL_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)


@cache
def qwen2_vl_chat_template() -> str:
    """The Qwen2-VL-Instruct chat template (Jinja), as the model's processor ships it."""
    return resources.files("assets.contract").joinpath("templates/qwen2_vl_chat_template.jinja").read_text()


def render_chatml(
    messages: Sequence[dict[str, Any]],
    *,
    add_generation_prompt: bool = False,
    add_vision_id: bool = False,
) -> str:
    """Render conversation-contract messages exactly as the Qwen2-VL chat template does."""
    out: list[str] = []
    n_images = n_videos = 0
    for i, message in enumerate(messages):
        role = message["role"]
        if i == 0 and role != "system":
            out.append(f"{IM_START}system\n{DEFAULT_SYSTEM_PROMPT}{IM_END}\n")
        out.append(f"{IM_START}{role}\n")
        content = message["content"]
        if isinstance(content, str):
            out.append(content)
        else:
            for part in content:
                kind = part.get("type")
                if kind == "image":
                    n_images += 1
                    if add_vision_id:
                        out.append(f"Picture {n_images}: ")
                    out.append(IMAGE_PLACEHOLDER)
                elif kind == "video":
                    n_videos += 1
                    if add_vision_id:
                        out.append(f"Video {n_videos}: ")
                    out.append(VIDEO_PLACEHOLDER)
                else:
                    out.append(part.get("text") or "")
        out.append(f"{IM_END}\n")
    if add_generation_prompt:
        out.append(f"{IM_START}assistant\n")
    return "".join(out)
