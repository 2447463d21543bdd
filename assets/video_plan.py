"""Pure planning of how a video becomes Qwen2-VL visual tokens: which frames, at what size.

Everything here is arithmetic on metadata (total frames, fps, height, width), so the rule can
be tested on a one-hour video without decoding a byte, and the CLI can print a plan before any
decoding happens. Decoding lives in ``assets.video_decode``, hybrid resolution in
``assets.hybrid``.

Conventions (DESIGN.md section 5, qwen-vl-utils):

* frame count: n = round(total / video_fps * fps), clamped to [min_frames, min(max_frames,
  total)], floored to a multiple of 2 (Qwen2-VL's temporal patch) and at least 2; indices =
  linspace(0, total - 1, n).round(). qwen-vl-utils skips the ``round`` and floors directly;
  the design fixes the rounding, so we follow the design.
* a source below the target fps yields every frame it has (fewer than fps per second); a clip
  of exactly one frame is sampled as that frame twice (one temporal pair, the same thing the
  image processor does with a still image); zero frames or unknown fps is a ``PlanError``.
* per-frame pixel budget: max_pixels = max(min(VIDEO_MAX_PIXELS, total_pixels / n * 2),
  min_pixels * 1.05), then smart_resize under [min_pixels, max_pixels], so a long video is
  shrunk to stay within the per-video budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from assets.media import RejectRow

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

    def key(self) -> str:
        h = self.hybrid
        hybrid = f"{h.L},{h.m},{h.s:g},{h.min_frames}" if h else "off"
        return (
            f"fps={self.fps:g};min={self.min_frames};max={self.max_frames};px={self.min_pixels},"
            f"{self.max_pixels},{self.total_pixels};hybrid={hybrid};v2"
        )

    def with_part(self, fps: float | None, max_frames: int | None) -> "VideoSamplingConfig":
        """The config a conversation's video part asks for (its fps and frame cap win)."""
        cfg = self
        if fps is not None and fps > 0:
            cfg = replace(cfg, fps=float(fps))
        if max_frames is not None and max_frames > 0:
            cfg = replace(cfg, max_frames=min(cfg.max_frames, int(max_frames)))
        return cfg


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


def sample_count(total_frames: int, video_fps: float, cfg: VideoSamplingConfig = VideoSamplingConfig()) -> int:
    """How many frames to sample (before the single-frame rule); see the module docstring."""
    if total_frames <= 0:
        raise PlanError("no_frames", f"video has {total_frames} frames")
    if not video_fps or not math.isfinite(video_fps) or video_fps <= 0:
        raise PlanError("bad_metadata", f"video fps is {video_fps!r}")
    n = round(total_frames / video_fps * cfg.fps)
    upper = min(cfg.max_frames, total_frames)
    n = min(max(n, cfg.min_frames), upper)
    n = floor_by(n, FRAME_FACTOR)
    return max(n, FRAME_FACTOR)


def frame_indices(total_frames: int, video_fps: float, cfg: VideoSamplingConfig = VideoSamplingConfig()) -> list[int]:
    """Frame indices to decode: linspace(0, total-1, n).round(); [0, 0] for a one-frame clip."""
    n = sample_count(total_frames, video_fps, cfg)
    if total_frames == 1:
        return [0] * n
    # numpy-free linspace with numpy's rounding (half to even) so the CLI needs no numpy.
    step = (total_frames - 1) / (n - 1)
    return [int(round(i * step)) if i < n - 1 else total_frames - 1 for i in range(n)]


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
    from assets.hybrid import hybrid_layout

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
