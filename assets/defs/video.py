"""video_frames asset: a thin Dagster wrapper over ``assets.video.frames``."""

import collections
import json
import time

import dagster as dg
import pyarrow.parquet as pq

from assets.contract.markdown import counts_table, histogram_md, markdown_table, png_markdown, shrink_png
from assets.contract.progress import duration
from assets.defs.chatml import chatml_key
from assets.defs.metadata import DATA_TEAM, column_schema, schema_metadata
from assets.defs.resources import DataStore
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

VIDEO_GROUP = "video"
VIDEO_FRAMES_KEY = dg.AssetKey([STAGE])
VIDEO_SOURCES = [s.name for s in SOURCES if s.category == "video"]
# Bump when sampling or shard output changes (data version = hash(code version, input versions)).
VIDEO_FRAMES_CODE_VERSION = "1"


class VideoFramesAssetConfig(dg.Config):
    fps: float = 2.0
    """Target sampling rate (a video part's own fps wins)."""
    max_frames: int = 768
    min_pixels: int = 128 * 28 * 28
    max_pixels: int = 768 * 28 * 28
    total_pixels: int = int(128000 * 28 * 28 * 0.9)
    hybrid: str | None = "4,240,3"
    """Hybrid resolution L,m,s (GIRAFFE 3.5), or empty/None for off."""
    hybrid_min_frames: int = 512
    """Hybrid applies only to videos with more sampled frames than this."""
    workers: int = 2
    decoder: str = "auto"
    """auto: ffmpeg select pipe checked against decord (falls back to it); decord: decord only.
    Same frames either way."""

    def to_config(self) -> VideoFramesConfig:
        hybrid = HybridConfig.parse(self.hybrid, self.hybrid_min_frames) if self.hybrid else None
        sampling = VideoSamplingConfig(
            fps=self.fps, max_frames=self.max_frames, min_pixels=self.min_pixels, max_pixels=self.max_pixels,
            total_pixels=self.total_pixels, hybrid=hybrid,
        )
        return VideoFramesConfig(sampling=sampling, workers=self.workers, decoder=self.decoder)


def video_sources(samples: list[dict]) -> dict[str, str]:
    """video_key -> the source(s) whose samples reference it (", "-joined when several do)."""
    found: dict[str, list[str]] = {}
    for s in samples:
        if s["video_key"] and s["source"] not in found.setdefault(s["video_key"], []):
            found[s["video_key"]].append(s["source"])
    return {k: ", ".join(v) for k, v in found.items()}


@dg.asset(
    key=VIDEO_FRAMES_KEY,
    deps=[chatml_key(name) for name in VIDEO_SOURCES],
    group_name=VIDEO_GROUP,
    code_version=VIDEO_FRAMES_CODE_VERSION,
    owners=[DATA_TEAM],
    metadata={"dagster/column_schema": column_schema(FRAME_SCHEMA)},
    kinds={"parquet", "ffmpeg", "decord"},
    description="Every video a ChatML sample references, sampled at 2 fps (ffmpeg select pipe checked "
    "against decord, decord fallback, ffmpeg transcode for unreadable files), resized by smart_resize "
    "under per-frame and per-video pixel budgets, hybrid resolution above 512 frames; frames as PNG in one "
    "Parquet shard per video, incremental by content hash. Its row count is the number of sampled frames "
    "(one row per frame in `frames/*.parquet`); `videos_schema` describes videos.parquet, one row per video.",
    check_specs=[
        dg.AssetCheckSpec("frames_match_grids", asset=VIDEO_FRAMES_KEY,
                          description="frames per video = 2 x sum of temporal grid rows; tokens = grid products / 4"),
    ],
)
def video_frames(context: dg.AssetExecutionContext, config: VideoFramesAssetConfig, store: DataStore) -> dg.MaterializeResult:
    cfg = config.to_config()
    refs = []
    for name in VIDEO_SOURCES:
        path = store.stage_dir("chatml", name) / "conversations.parquet"
        if path.is_file():
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
    context.log.info(f"{len(refs)} video parts, {len(result.videos)} videos in {duration(seconds)}: {len(ok)} ok "
                     f"({sum(v['cached'] for v in ok)} cached), {len(bad)} rejected, {frames} frames")
    sources = video_sources(result.samples)
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
            "path": dg.MetadataValue.path(str(out_dir)),
        },
        check_results=[
            dg.AssetCheckResult(check_name="frames_match_grids", passed=not mismatched,
                                metadata={"mismatched": str(mismatched[:5])}),
        ],
    )
