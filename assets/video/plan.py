"""Pure planning of how a video becomes Qwen2-VL visual tokens: which frames, at what size.

Everything here is arithmetic on metadata (total frames, fps, height, width), so the rule can
be tested on a one-hour video without decoding a byte, and the CLI can print a plan before any
decoding happens. Decoding lives in ``assets.video.decode``, hybrid resolution in
``assets.video.hybrid``.

Conventions (DESIGN.md section 5, qwen-vl-utils 0.0.14, matched exactly):

* frame count (``smart_nframes``): n = total / video_fps * fps, not rounded, clamped to
  [ceil2(min_frames), floor2(min(max_frames, total))] and to total, then floored to a multiple
  of 2 (Qwen2-VL's temporal patch); indices = float32 ``torch.linspace(0, total - 1, n)``
  rounded half to even. The float32 grid matters: rounding a float64 linspace moves 1-6 of
  768 indices of a long video by one frame. ``linspace_f32`` computes that grid without torch
  (see there for the one way torch's own result depends on the CPU).
* a source below the target fps yields every frame it has (fewer than fps per second); a clip
  of exactly one frame is sampled as that frame twice (one temporal pair, the same thing the
  image processor does with a still image), where qwen-vl-utils raises; zero frames or unknown
  fps is a ``PlanError``.
* per-frame pixel budget: max_pixels = max(min(VIDEO_MAX_PIXELS, total_pixels / n * 2),
  min_pixels * 1.05), then smart_resize under [min_pixels, max_pixels], so a long video is
  shrunk to stay within the per-video budget.
* ``resize`` names how decoded frames reach the planned size (``assets.video.resize``):
  ``torch`` (default) is torchvision's bicubic antialias on tensors, the pixels qwen-vl-utils
  and transformers' video processors give; ``pil`` is PIL bicubic. It changes the pixels, so it
  is part of the cache key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from assets.video.grid import (
    FPS_MAX_FRAMES,
    FPS_MIN_FRAMES,
    FRAME_FACTOR,
    IMAGE_FACTOR,
    MERGE_SIZE,
    PATCH_SIZE,
    VIDEO_MAX_PIXELS,
    VIDEO_MIN_PIXELS,
    VIDEO_TOTAL_PIXELS,
    HybridConfig,
    PlanError,
    ceil_by,
    floor_by,
    smart_resize,
)
from assets.video.hybrid import hybrid_layout

FIXED_COUNT_FPS = 1e9  # with min_frames = max_frames = N, every video yields min(N, its frames)
RESIZE_METHODS = ("torch", "pil")


@dataclass(frozen=True)
class VideoSamplingConfig:
    """How every video is sampled; its ``key()`` is part of the incremental cache key."""

    fps: float = 2.0
    min_frames: int = FPS_MIN_FRAMES
    max_frames: int = FPS_MAX_FRAMES
    min_pixels: int = VIDEO_MIN_PIXELS
    max_pixels: int = VIDEO_MAX_PIXELS
    total_pixels: int = VIDEO_TOTAL_PIXELS
    hybrid: HybridConfig | None = field(default_factory=HybridConfig)
    resize: str = "torch"
    """``torch``: torchvision's bicubic antialias (qwen-vl-utils' pixels); ``pil``: PIL bicubic."""

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_METHODS:
            raise ValueError(f"resize must be one of {RESIZE_METHODS}, got {self.resize!r}")

    def key(self) -> str:
        """Everything that changes the sampled frames; ``v3``: the qwen-vl-utils frame rule."""
        h = self.hybrid
        hybrid = f"{h.L},{h.m},{h.s:g},{h.min_frames}" if h else "off"
        return (
            f"fps={self.fps:g};min={self.min_frames};max={self.max_frames};px={self.min_pixels},"
            f"{self.max_pixels},{self.total_pixels};hybrid={hybrid};resize={self.resize};v3"
        )

    @classmethod
    def fixed_count(cls, frames: int, **settings) -> "VideoSamplingConfig":
        """``frames`` frames spread uniformly over every video, whatever its length (fewer
        when it has fewer): the fixed-count protocol some benchmarks report next to 2 fps."""
        return cls(fps=FIXED_COUNT_FPS, min_frames=frames, max_frames=frames, **settings)

    def with_part(self, fps: float | None, max_frames: int | None) -> "VideoSamplingConfig":
        """The config a conversation's video part asks for (its fps and frame cap win)."""
        cfg = self
        if fps is not None and fps > 0:
            cfg = replace(cfg, fps=float(fps))
        if max_frames is not None and max_frames > 0:
            cfg = replace(cfg, max_frames=min(cfg.max_frames, int(max_frames)))
        return cfg


def sample_count(total_frames: int, video_fps: float, cfg: VideoSamplingConfig = VideoSamplingConfig()) -> int:
    """How many frames to sample: qwen-vl-utils' ``smart_nframes``, except that a clip too short
    for one temporal pair (1 frame) gets 2 (its frame twice) instead of an error."""
    if total_frames <= 0:
        raise PlanError("no_frames", f"video has {total_frames} frames")
    if not video_fps or not math.isfinite(video_fps) or video_fps <= 0:
        raise PlanError("bad_metadata", f"video fps is {video_fps!r}")
    lower = ceil_by(cfg.min_frames, FRAME_FACTOR)
    upper = floor_by(min(cfg.max_frames, total_frames), FRAME_FACTOR)
    n = total_frames / video_fps * cfg.fps
    n = min(min(max(n, lower), upper), total_frames)
    return max(floor_by(n, FRAME_FACTOR), FRAME_FACTOR)


def linspace_f32(end: int, n: int) -> np.ndarray:
    """``torch.linspace(0, end, n)`` in float32, bit for bit, without torch.

    torch's CPU kernel computes ``step = end / (n - 1)`` in float32, then ``step * i`` for the
    first half and ``end - step * (n - 1 - i)`` for the second. Its AVX2 and AVX512 builds (the
    ones torch runs on any x86-64 CPU since 2013) contract that to a fused multiply-add: one
    rounding of the exact value. Here the product and difference are exact in float64 (24-bit
    operands, n < 2^27) and rounded to float32 once, which is that fused result. (A torch run
    with ``ATEN_CPU_CAPABILITY=default`` rounds twice and differs at a few positions; a plan
    must not depend on the host, so this one is fixed.)"""
    e = np.float32(end)
    step = np.float32(e / np.float32(n - 1))
    i = np.arange(n, dtype=np.float64)
    half = n // 2
    out = np.where(i < half, np.float64(step) * i, np.float64(e) - np.float64(step) * (n - 1 - i))
    return out.astype(np.float32)


def frame_indices(total_frames: int, video_fps: float, cfg: VideoSamplingConfig = VideoSamplingConfig()) -> list[int]:
    """Frame indices to decode: float32 linspace(0, total-1, n) rounded half to even (as
    ``torch.round``); [0, 0] for a one-frame clip."""
    n = sample_count(total_frames, video_fps, cfg)
    if total_frames == 1:
        return [0] * n
    return np.rint(linspace_f32(total_frames - 1, n)).astype(np.int64).tolist()


def frame_max_pixels(n_frames: int, cfg: VideoSamplingConfig) -> int:
    """Per-frame pixel cap from the per-frame and per-video budgets (qwen-vl-utils)."""
    return int(max(min(cfg.max_pixels, cfg.total_pixels / n_frames * FRAME_FACTOR), int(cfg.min_pixels * 1.05)))


@dataclass(frozen=True)
class FramePlan:
    """What a video becomes: frames, their sizes, and the grid rows the model sees.

    ``grids`` are Qwen2-VL ``video_grid_thw`` rows in patch units (t, h/14, w/14); each row is
    one ``<|vision_start|>...<|vision_end|>`` block of tokens. ``frame_rows[i]`` says which
    row frame ``i`` belongs to. Without hybrid resolution there is one row for the video."""

    total_frames: int
    video_fps: float
    height: int
    width: int
    indices: list[int]
    timestamps: list[float]
    sizes: list[tuple[int, int]]
    grids: list[tuple[int, int, int]]
    frame_rows: list[int]
    hybrid: HybridConfig | None
    notes: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.total_frames / self.video_fps

    @property
    def tokens_per_row(self) -> list[int]:
        return [t * h * w // (MERGE_SIZE * MERGE_SIZE) for t, h, w in self.grids]

    @property
    def visual_tokens(self) -> int:
        return sum(self.tokens_per_row)

    def to_json(self) -> dict:
        return {
            "video_fps": self.video_fps,
            "total_frames": self.total_frames,
            "duration": round(self.duration, 6),
            "height": self.height,
            "width": self.width,
            "n_frames": len(self.indices),
            "indices": self.indices,
            "timestamps": self.timestamps,
            "sizes": [list(s) for s in self.sizes],
            "grids": [list(g) for g in self.grids],
            "tokens_per_row": self.tokens_per_row,
            "visual_tokens": self.visual_tokens,
            "hybrid": None if self.hybrid is None else [self.hybrid.L, self.hybrid.m, self.hybrid.s],
            "notes": self.notes,
        }


def plan_video(
    total_frames: int,
    video_fps: float,
    height: int,
    width: int,
    cfg: VideoSamplingConfig = VideoSamplingConfig(),
) -> FramePlan:
    """The full plan for a video from its metadata alone."""
    indices = frame_indices(total_frames, video_fps, cfg)
    notes = []
    if total_frames == 1:
        notes.append("single_frame_duplicated")
    if total_frames / video_fps * cfg.fps > total_frames:
        notes.append(f"source_below_{cfg.fps:g}fps")
    n = len(indices)
    max_px = frame_max_pixels(n, cfg)
    use_hybrid = cfg.hybrid is not None and n > cfg.hybrid.min_frames
    if use_hybrid:
        sizes, grids, rows, capped = hybrid_layout(height, width, n, cfg.hybrid, max_px)
        notes += capped
    else:
        h, w = smart_resize(height, width, IMAGE_FACTOR, cfg.min_pixels, max_px)
        sizes = [(h, w)] * n
        grids = [(n // FRAME_FACTOR, h // PATCH_SIZE, w // PATCH_SIZE)]
        rows = [0] * n
    return FramePlan(
        total_frames=total_frames,
        video_fps=float(video_fps),
        height=height,
        width=width,
        indices=indices,
        timestamps=[round(i / video_fps, 6) for i in indices],
        sizes=sizes,
        grids=grids,
        frame_rows=rows,
        hybrid=cfg.hybrid if use_hybrid else None,
        notes=notes,
    )
