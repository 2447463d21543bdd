"""video_frames asset: a thin Dagster wrapper over ``assets.video.frames``."""

import collections
import json
import time
from typing import Optional

import dagster as dg
import pyarrow.parquet as pq
from pydantic import Field

from assets.contract.markdown import counts_table, histogram_md, markdown_table, png_markdown, shrink_png
from assets.contract.progress import duration
from assets.contract.quality import count_lost, mass_rejections
from assets.defs.chatml import chatml_inputs
from assets.defs.keys import VIDEO_FRAMES_KEY, VIDEO_GROUP, chatml_key
from assets.defs.metadata import DATA_TEAM, column_schema, schema_metadata
from assets.defs.resources import DataStore, QualityPolicy
from assets.sources.registry import SOURCES
from assets.video.contact_sheet import contact_sheet_png
from assets.video.frames import (
    FRAME_SCHEMA,
    STAGE,
    VIDEO_SCHEMA,
    VideoFramesConfig,
    config_summary,
    run_video_frames,
    video_refs,
)
from assets.video.grid import HybridConfig
from assets.video.plan import VideoSamplingConfig

VIDEO_SOURCES = [s.name for s in SOURCES if s.category == "video"]
# Bump when sampling or shard output changes (data version = hash(code version, input versions)).
VIDEO_FRAMES_CODE_VERSION = "2"  # 2: qwen-vl-utils frame rule, torch resize


_SAMPLING = VideoSamplingConfig()
_HYBRID = HybridConfig()


class VideoSamplingParams(dg.Config):
    """The Dagster face of ``VideoSamplingConfig`` (defaults read from it), shared by the
    video_frames asset and every evaluation: one place for the 2 fps rule's settings."""

    fps: float = Field(default=_SAMPLING.fps, description="Target sampling rate (a video part's own fps wins).")
    frames: Optional[int] = Field(
        default=None, description="A fixed frame count per video (spread uniformly) instead of fps sampling."
    )
    max_frames: int = Field(default=_SAMPLING.max_frames, description="Frame cap per video (qwen-vl-utils: 768).")
    min_pixels: Optional[int] = Field(default=None, description="Per-frame pixel floor; None: Qwen2-VL's (128 x 28^2).")
    max_pixels: Optional[int] = Field(default=None, description="Per-frame pixel cap; None: Qwen2-VL's (768 x 28^2).")
    total_pixels: int = Field(default=_SAMPLING.total_pixels, description="Pixel budget of one whole video.")
    hybrid: Optional[str] = Field(
        default=f"{_HYBRID.L},{_HYBRID.m},{_HYBRID.s:g}",
        description="Hybrid resolution L,m,s (GIRAFFE 3.5), or empty/None for off.",
    )
    hybrid_min_frames: int = Field(
        default=_HYBRID.min_frames, description="Hybrid applies only to videos with more sampled frames than this."
    )
    resize: str = Field(
        default=_SAMPLING.resize,
        description="torch: torchvision's bicubic antialias, the pixels qwen-vl-utils gives (default); pil: PIL "
        "bicubic. Part of the frame cache key.",
    )

    def sampling(self, pixels: tuple[int, int] | None = None) -> VideoSamplingConfig:
        """The plain config; ``pixels`` replaces the (min, max) per-frame defaults left unset."""
        lo, hi = pixels or (_SAMPLING.min_pixels, _SAMPLING.max_pixels)
        settings = dict(
            min_pixels=self.min_pixels or lo,
            max_pixels=self.max_pixels or hi,
            total_pixels=self.total_pixels,
            hybrid=HybridConfig.parse(self.hybrid, self.hybrid_min_frames) if self.hybrid else None,
            resize=self.resize,
        )
        if self.frames:
            return VideoSamplingConfig.fixed_count(self.frames, **settings)
        return VideoSamplingConfig(fps=self.fps, max_frames=self.max_frames, **settings)


class VideoFramesAssetConfig(VideoSamplingParams):
    workers: int = Field(default=2, description="Videos sampled at once (processes); each gets its share of the host's cores.")
    decoder: str = Field(
        default="auto",
        description="auto: ffmpeg select pipe checked against decord (falls back to it); decord: decord only. "
        "Same frames either way.",
    )

    def to_config(self) -> VideoFramesConfig:
        return VideoFramesConfig(sampling=self.sampling(), workers=self.workers, decoder=self.decoder)


def sources_of_videos(samples: list[dict]) -> dict[str, str]:
    """video_key -> the source(s) whose samples reference it (", "-joined when several do)."""
    found: dict[str, list[str]] = {}
    for s in samples:
        if s["video_key"] and s["source"] not in found.setdefault(s["video_key"], []):
            found[s["video_key"]].append(s["source"])
    return {k: ", ".join(v) for k, v in found.items()}


VIDEO_FRAMES_DESCRIPTION = (
    "Every video a ChatML sample references, sampled at 2 fps by qwen-vl-utils' rule (ffmpeg select pipe checked "
    "against decord, decord fallback, ffmpeg transcode for unreadable files), resized to smart_resize with "
    "torchvision's bicubic antialias under per-frame and per-video pixel budgets, hybrid resolution above 512 frames; frames as PNG in one "
    "Parquet shard per video, incremental by content hash. Its row count is the number of sampled frames "
    "(one row per frame in `frames/*.parquet`); `videos_schema` describes videos.parquet, one row per video."
)

VIDEO_FRAMES_CHECKS = [
    dg.AssetCheckSpec("frames_match_grids", asset=VIDEO_FRAMES_KEY, blocking=True,
                      description="frames per video = 2 x sum of temporal grid rows; tokens = grid products / 4"),
    dg.AssetCheckSpec("no_mass_rejection", asset=VIDEO_FRAMES_KEY, blocking=True,
                      description="no single reason takes more than quality.max_reason_share of a source's video parts"),
]


def build_video_frames(video_sources: list[str]) -> dg.AssetsDefinition:
    """The video_frames asset over the ChatML of ``video_sources`` (registry and declared)."""

    def video_frames(context: dg.AssetExecutionContext, config: VideoFramesAssetConfig, store: DataStore,
                     quality: QualityPolicy) -> dg.MaterializeResult:
        return _materialize_video_frames(context, config, store, quality, list(video_sources))

    return dg.asset(
        key=VIDEO_FRAMES_KEY,
        deps=[chatml_key(name) for name in video_sources],
        group_name=VIDEO_GROUP,
        code_version=VIDEO_FRAMES_CODE_VERSION,
        kinds={"parquet", "ffmpeg", "decord"},
        description=VIDEO_FRAMES_DESCRIPTION,
        check_specs=VIDEO_FRAMES_CHECKS,
        owners=[DATA_TEAM],
        metadata={"sources": ", ".join(video_sources), "dagster/column_schema": column_schema(FRAME_SCHEMA)},
    )(video_frames)


def _materialize_video_frames(context, config, store: DataStore, quality: QualityPolicy, video_sources: list[str]):
    cfg = config.to_config()
    inputs = chatml_inputs(store, video_sources, quality, "video_frames")
    refs = []
    for path in inputs.paths.values():
        refs += video_refs(pq.read_table(path))
    out_dir = store.stage_dir(STAGE)
    started = time.monotonic()
    result = run_video_frames(refs, out_dir, cfg, log=context.log.info)
    seconds = time.monotonic() - started
    ok = [v for v in result.videos if v["status"] == "ok"]
    bad = [v for v in result.videos if v["status"] != "ok"]
    frames = sum(v["n_frames"] for v in ok)
    tokens = [int(v["visual_tokens"]) for v in ok]
    mismatched = [
        v["video_key"] for v in ok
        if v["n_frames"] != 2 * sum(g[0] for g in json.loads(v["grids"]))
        or v["visual_tokens"] != sum(t * h * w // 4 for t, h, w in json.loads(v["grids"]))
    ]
    parts_by_source: dict[str, int] = {}
    for r in refs:
        parts_by_source[r.source] = parts_by_source.get(r.source, 0) + 1
    mass = mass_rejections(count_lost(result.rejected, raw_rows=False), parts_by_source, quality.max_reason_share)
    if inputs.excluded:
        context.log.warning(f"video_frames leaves out {inputs.excluded_md()} (quality.exclude_sources)")
    context.log.info(f"{len(refs)} video parts, {len(result.videos)} videos in {duration(seconds)}: {len(ok)} ok "
                     f"({sum(v['cached'] for v in ok)} cached), {len(bad)} rejected, {frames} frames")
    sources = sources_of_videos(result.samples)
    sheet = contact_sheet_png(result.videos, sources)
    if sheet is not None:
        tmp = out_dir / "contact_sheet.png.tmp"
        tmp.write_bytes(sheet)
        tmp.replace(out_dir / "contact_sheet.png")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": frames,
            "row_count_unit": "frames (one row per sampled frame; videos are in videos_table)",
            "dagster/column_schema": column_schema(FRAME_SCHEMA),
            "videos_schema": schema_metadata(VIDEO_SCHEMA),
            "contact_sheet": dg.MetadataValue.md(
                png_markdown(shrink_png(sheet), "sampled frames per video (red: hybrid)") if sheet else "_(no video sampled)_"
            ),
            "contact_sheet_png": dg.MetadataValue.path(str(out_dir / "contact_sheet.png")),
            "video_parts": len(refs),
            "videos": len(result.videos),
            "videos_cached": sum(bool(v["cached"]) for v in result.videos),
            "videos_hybrid": sum(bool(v["hybrid"]) for v in ok),
            "decoders": dg.MetadataValue.md(counts_table(
                collections.Counter(v["decoder"] or "cached (earlier code)" for v in ok), key="decoder", value="videos")),
            "frames_sampled": frames,
            "visual_tokens": sum(tokens),
            "rejected": len(result.rejected),
            "videos_rejected": dg.MetadataValue.md(
                markdown_table(bad, ["path", "reason", "detail"], width=100) if bad else "_(none)_"
            ),
            "rejects_by_reason": dg.MetadataValue.md(counts_table(result.reasons)),
            "tokens_per_video": dg.MetadataValue.md(histogram_md(tokens, "visual tokens per video", "tokens")),
            "videos_table": dg.MetadataValue.md(markdown_table(
                [{**v, "path": v["path"].rsplit("/", 1)[-1], "source": sources.get(v["video_key"], "?"),
                  "duration": f"{v['duration']:.1f} s"} for v in ok[:20]],
                ["path", "source", "duration", "video_fps", "total_frames", "n_frames", "grids", "visual_tokens",
                 "hybrid", "decoder", "cached"], width=60)),
            "settings": json.dumps(config_summary(cfg.sampling)),
            "sources": ", ".join(inputs.paths),
            "excluded_sources": inputs.excluded_md(),
            "path": dg.MetadataValue.path(str(out_dir)),
        },
        check_results=[
            dg.AssetCheckResult(check_name="frames_match_grids", passed=not mismatched,
                                metadata={"mismatched": str(mismatched[:5])}),
            dg.AssetCheckResult(check_name="no_mass_rejection", passed=not mass,
                                metadata={"max_reason_share": quality.max_reason_share,
                                          "worst": mass[0].describe() if mass else "(none over the limit)",
                                          "reason": mass[0].reason if mass else ""}),
        ],
    )


video_frames = build_video_frames(VIDEO_SOURCES)
