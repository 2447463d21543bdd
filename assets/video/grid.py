"""Qwen2-VL's visual grid: patch and merge factors, the pixel budgets, and smart_resize.

The arithmetic every video (and image) plan is built from, with no notion of frames to sample:
``plan`` (which frames) and ``hybrid`` (two sizes per group) both stand on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from assets.contract.media import RejectRow

IMAGE_FACTOR = 28  # patch 14 x spatial merge 2: one LLM token per 28x28 pixels
FRAME_FACTOR = 2  # temporal patch size
PATCH_SIZE = 14
MERGE_SIZE = 2
VIDEO_MIN_PIXELS = 128 * 28 * 28
VIDEO_MAX_PIXELS = 768 * 28 * 28
VIDEO_TOTAL_PIXELS = int(128000 * 28 * 28 * 0.9)
FPS_MIN_FRAMES = 4
FPS_MAX_FRAMES = 768
MAX_RATIO = 200


class PlanError(RejectRow, ValueError):
    """A video that cannot be planned; ``reason`` is machine-readable (the rejected table's)."""


@dataclass(frozen=True)
class HybridConfig:
    """Hybrid resolution (GIRAFFE 3.5): groups of ``L`` temporal patches, the first at about
    ``m`` tokens, the other L-1 at about m/s. ``min_frames``: only videos with more sampled
    frames than this use it (the paper applies it to 512+ frame inputs)."""

    L: int = 4
    m: int = 240
    s: float = 3.0
    min_frames: int = 512

    def __post_init__(self) -> None:
        if self.L < 1 or self.m < 1 or self.s <= 0:
            raise ValueError(f"hybrid (L, m, s) must be positive, got ({self.L}, {self.m}, {self.s})")

    @classmethod
    def parse(cls, text: str, min_frames: int = 0) -> "HybridConfig":
        """``"4,240,3"`` -> HybridConfig(4, 240, 3.0)."""
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 3:
            raise ValueError(f"--hybrid takes L,m,s (three numbers), got {text!r}")
        return cls(L=int(parts[0]), m=int(parts[1]), s=float(parts[2]), min_frames=min_frames)


def round_by(x: float, f: int) -> int:
    return round(x / f) * f


def floor_by(x: float, f: int) -> int:
    return math.floor(x / f) * f


def ceil_by(x: float, f: int) -> int:
    return math.ceil(x / f) * f


def smart_resize(
    height: int, width: int, factor: int = IMAGE_FACTOR, min_pixels: int = 56 * 56, max_pixels: int = 28 * 28 * 1280
) -> tuple[int, int]:
    """Qwen2-VL's resize rule (qwen-vl-utils form): both sides multiples of ``factor``, area
    within [min_pixels, max_pixels], aspect ratio kept as closely as the grid allows.

    Equal to transformers' ``smart_resize`` wherever that one is defined (sides >= factor/2);
    the ``max(factor, ...)`` keeps tiny inputs from rounding to a zero side."""
    if height <= 0 or width <= 0:
        raise PlanError("bad_metadata", f"frame size {width}x{height}")
    if max(height, width) / min(height, width) > MAX_RATIO:
        raise PlanError("bad_aspect_ratio", f"aspect ratio {max(height, width) / min(height, width):.1f} > {MAX_RATIO}")
    h_bar = max(factor, round_by(height, factor))
    w_bar = max(factor, round_by(width, factor))
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, floor_by(height / beta, factor))
        w_bar = max(factor, floor_by(width / beta, factor))
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = ceil_by(height * beta, factor)
        w_bar = ceil_by(width * beta, factor)
    return h_bar, w_bar


def tokens_for(height: int, width: int) -> int:
    """LLM tokens of one temporal patch at a resized (height, width)."""
    return (height // IMAGE_FACTOR) * (width // IMAGE_FACTOR)
