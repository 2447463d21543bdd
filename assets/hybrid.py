"""Hybrid-resolution layout (GIRAFFE section 3.5) for Qwen2-VL's temporal patches.

The paper splits a video into N groups of L frames; the first frame of a group costs m visual
tokens, the other L-1 cost m/s, so tokens fall from L*N*m to (1 + (L-1)/s)*N*m.

Qwen2-VL cannot give frames of one video different sizes: one ``video_grid_thw`` row (t, h, w)
covers t temporal patches of 2 frames each, all at one size, and its token count is t*h*w/4.
So the design here is:

* the unit the paper calls a "frame" is one Qwen2-VL **temporal patch** (2 consecutive sampled
  frames, which share one token grid). Sampled frames pair up naturally (frame 2k with 2k+1),
  so no frame is duplicated and every token saved is a real saving;
* patches are grouped by L; each group becomes **two grid rows**: (1, hi_h, hi_w) for its first
  patch and (L-1, lo_h, lo_w) for the rest (a short last group keeps what it has). The rows
  are emitted in time order, so M-RoPE still sees time advance from row to row;
* each row is its own ``<|vision_start|><|video_pad|>...<|vision_end|>`` block in the text.
  transformers' ``get_rope_index`` takes one grid row per contiguous run of video tokens, so
  the separators are required; they cost 2 text tokens per extra row (under 1% at the
  defaults), which token counting includes;
* "about m tokens" means the largest 28-pixel grid with the frame's aspect ratio and at most
  m tokens (smart_resize's shrinking branch applied at exactly m*28*28 pixels, scaling up too),
  also capped by the per-frame pixel budget of the video. So per group the tokens are exactly
  hi + (L-1)*lo with hi <= m and lo <= m/s, each within one grid step of the target.
"""

from __future__ import annotations

import math

from assets.video_plan import FRAME_FACTOR, IMAGE_FACTOR, PATCH_SIZE, HybridConfig, PlanError


def fit_tokens(height: int, width: int, target_tokens: float, max_pixels: int | None = None) -> tuple[int, int]:
    """The (h, w) in multiples of 28 with the aspect ratio of (height, width) and at most
    ``target_tokens`` tokens (never fewer than 1x1), optionally under ``max_pixels``."""
    if height <= 0 or width <= 0:
        raise PlanError("bad_metadata", f"frame size {width}x{height}")
    pixels = target_tokens * IMAGE_FACTOR * IMAGE_FACTOR
    if max_pixels is not None:
        pixels = min(pixels, max_pixels)
    beta = math.sqrt(height * width / pixels)
    h = max(IMAGE_FACTOR, math.floor(height / beta / IMAGE_FACTOR) * IMAGE_FACTOR)
    w = max(IMAGE_FACTOR, math.floor(width / beta / IMAGE_FACTOR) * IMAGE_FACTOR)
    return h, w


def hybrid_layout(
    height: int, width: int, n_frames: int, hybrid: HybridConfig, max_pixels: int | None = None
) -> tuple[list[tuple[int, int]], list[tuple[int, int, int]], list[int]]:
    """Per-frame sizes, grid rows and frame -> row map for ``n_frames`` (even) sampled frames."""
    if n_frames % FRAME_FACTOR:
        raise ValueError(f"hybrid layout needs an even frame count, got {n_frames}")
    hi = fit_tokens(height, width, hybrid.m, max_pixels)
    lo = fit_tokens(height, width, hybrid.m / hybrid.s, max_pixels)
    n_patches = n_frames // FRAME_FACTOR
    sizes: list[tuple[int, int]] = []
    grids: list[tuple[int, int, int]] = []
    rows: list[int] = []
    for start in range(0, n_patches, hybrid.L):
        in_group = min(hybrid.L, n_patches - start)
        grids.append((1, hi[0] // PATCH_SIZE, hi[1] // PATCH_SIZE))
        sizes += [hi] * FRAME_FACTOR
        rows += [len(grids) - 1] * FRAME_FACTOR
        if in_group > 1:
            grids.append((in_group - 1, lo[0] // PATCH_SIZE, lo[1] // PATCH_SIZE))
            sizes += [lo] * (FRAME_FACTOR * (in_group - 1))
            rows += [len(grids) - 1] * (FRAME_FACTOR * (in_group - 1))
    return sizes, grids, rows


def paper_token_formula(n_groups: int, hybrid: HybridConfig) -> float:
    """(1 + (L-1)/s) * N * m, the paper's token count for N full groups."""
    return (1 + (hybrid.L - 1) / hybrid.s) * n_groups * hybrid.m
