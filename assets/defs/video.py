"""video_frames asset: a thin Dagster wrapper over ``assets.video.frames``."""

import collections
import json

import dagster as dg
import pyarrow.parquet as pq

from assets.contract.markdown import counts_table, histogram_md, markdown_table
from assets.defs.chatml import chatml_key
from assets.defs.resources import DataStore
from assets.sources.registry import SOURCES
from assets.video.frames import STAGE, VideoFramesConfig, config_summary, run_video_frames, video_refs
from assets.video.grid import HybridConfig
from assets.video.plan import VideoSamplingConfig

VIDEO_GROUP = "video"
VIDEO_FRAMES_KEY = dg.AssetKey([STAGE])
VIDEO_SOURCES = [s.name for s in SOURCES if s.category == "video"]
# Bump when sampling or shard output changes (data version = hash(code version, input versions)).
VIDEO_FRAMES_CODE_VERSION = "2"  # 2: qwen-vl-utils frame rule, torch resize


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
    resize: str = "torch"
    """torch: torchvision's bicubic antialias, the pixels qwen-vl-utils gives (default); pil: PIL
    bicubic. Part of the frame cache key."""
    workers: int = 2
    """Videos sampled at once (processes); each gets its share of the host's cores."""
    decoder: str = "auto"
    """auto: ffmpeg select pipe checked against decord (falls back to it); decord: decord only.
    Same frames either way."""

    def to_config(self) -> VideoFramesConfig:
        hybrid = HybridConfig.parse(self.hybrid, self.hybrid_min_frames) if self.hybrid else None
        sampling = VideoSamplingConfig(
            fps=self.fps, max_frames=self.max_frames, min_pixels=self.min_pixels, max_pixels=self.max_pixels,
            total_pixels=self.total_pixels, hybrid=hybrid, resize=self.resize,
        )
        return VideoFramesConfig(sampling=sampling, workers=self.workers, decoder=self.decoder)


@dg.asset(
    key=VIDEO_FRAMES_KEY,
    deps=[chatml_key(name) for name in VIDEO_SOURCES],
    group_name=VIDEO_GROUP,
    code_version=VIDEO_FRAMES_CODE_VERSION,
    kinds={"parquet", "ffmpeg", "decord"},
    description="Every video a ChatML sample references, sampled at 2 fps by qwen-vl-utils' rule (ffmpeg select pipe checked "
    "against decord, decord fallback, ffmpeg transcode for unreadable files), resized to smart_resize with torchvision's bicubic antialias "
    "under per-frame and per-video pixel budgets, hybrid resolution above 512 frames; frames as PNG in one Parquet shard per video, incremental by content hash.",
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
    result = run_video_frames(refs, out_dir, cfg)
    ok = [v for v in result.videos if v["status"] == "ok"]
    bad = [v for v in result.videos if v["status"] != "ok"]
    frames = sum(v["n_frames"] for v in ok)
    tokens = [int(v["visual_tokens"]) for v in ok]
    mismatched = [
        v["video_key"] for v in ok
        if v["n_frames"] != 2 * sum(g[0] for g in json.loads(v["grids"]))
        or v["visual_tokens"] != sum(t * h * w // 4 for t, h, w in json.loads(v["grids"]))
    ]
    context.log.info(f"{len(refs)} video parts, {len(result.videos)} videos: {len(ok)} ok "
                     f"({sum(v['cached'] for v in ok)} cached), {len(bad)} rejected, {frames} frames")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": frames,
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
                [{**v, "path": v["path"].rsplit("/", 1)[-1]} for v in ok[:20]],
                ["path", "video_fps", "total_frames", "n_frames", "grids", "visual_tokens", "hybrid", "decoder", "cached"], width=60)),
            "settings": json.dumps(config_summary(cfg.sampling)),
            "path": dg.MetadataValue.path(str(out_dir)),
        },
        check_results=[
            dg.AssetCheckResult(check_name="frames_match_grids", passed=not mismatched,
                                metadata={"mismatched": str(mismatched[:5])}),
        ],
    )
