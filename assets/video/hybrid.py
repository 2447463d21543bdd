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
  m tokens (smart_resize's shrinking branch applied at exactly m*28*28 pixels), also capped by
  the per-frame pixel budget of the video. So per group the tokens are exactly hi + (L-1)*lo
  with hi <= m and lo <= m/s, each within one grid step of the target;
* neither size exceeds the video's **native** grid (smart_resize of its own size under the
  per-frame budget, no minimum): a 160x120 clip is never upscaled to 240 tokens a frame, as
  that would invent pixels and spend tokens on them. A capped size is recorded in the plan's
  notes (``hybrid_high_capped_at_native`` / ``hybrid_low_capped_at_native``), and when both
  sizes end up equal the rows merge into one (no separator tokens for nothing). The token
  formula holds wherever the video has at least m tokens natively.
"""

from __future__ import annotations

import math

from assets.video.grid import FRAME_FACTOR, IMAGE_FACTOR, PATCH_SIZE, HybridConfig, PlanError, smart_resize


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


def native_size(height: int, width: int, max_pixels: int | None = None) -> tuple[int, int]:
    """The video's own size on the 28-pixel grid (smart_resize without a minimum area)."""
    limit = max_pixels if max_pixels is not None else height * width * 4 + IMAGE_FACTOR**2
    return smart_resize(height, width, IMAGE_FACTOR, IMAGE_FACTOR * IMAGE_FACTOR, limit)


def hybrid_layout(
    height: int, width: int, n_frames: int, hybrid: HybridConfig, max_pixels: int | None = None
) -> tuple[list[tuple[int, int]], list[tuple[int, int, int]], list[int], list[str]]:
    """Per-frame sizes, grid rows, frame -> row map and notes for ``n_frames`` (even) frames."""
    if n_frames % FRAME_FACTOR:
        raise ValueError(f"hybrid layout needs an even frame count, got {n_frames}")
    native = native_size(height, width, max_pixels)
    hi = fit_tokens(height, width, hybrid.m, max_pixels)
    lo = fit_tokens(height, width, hybrid.m / hybrid.s, max_pixels)
    notes = []
    if hi[0] * hi[1] > native[0] * native[1]:
        hi = native
        notes.append("hybrid_high_capped_at_native")
    if lo[0] * lo[1] > native[0] * native[1]:
        lo = native
        notes.append("hybrid_low_capped_at_native")
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
    if hi == lo:  # both capped at native: one row, as without hybrid
        grids = [(n_patches, hi[0] // PATCH_SIZE, hi[1] // PATCH_SIZE)]
        rows = [0] * n_frames
    return sizes, grids, rows, notes


def paper_token_formula(n_groups: int, hybrid: HybridConfig) -> float:
    """(1 + (L-1)/s) * N * m, the paper's token count for N full groups."""
    return (1 + (hybrid.L - 1) / hybrid.s) * n_groups * hybrid.m
