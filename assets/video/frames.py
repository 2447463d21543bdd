"""The video_frames stage as plain functions: every video a ChatML sample references, sampled
at 2 fps (optionally hybrid resolution) into Parquet shards, in parallel and incrementally.

Layout under the stage folder (readable with pyarrow/polars/datasets, no project code needed):

* ``frames/<video_key>.parquet``: one row per sampled frame: ``video_key``, ``frame`` (position
  in the plan), ``frame_index`` (in the source), ``timestamp`` (s), ``height``, ``width``,
  ``grid_row`` (its ``video_grid_thw`` row) and ``png`` (lossless PNG bytes of the resized frame,
  zlib RLE strategy: see ``VideoFramesConfig.png_zlib_strategy``).
  The plan is in the file's schema metadata (``giraffe_plan``). One file per video scales to
  millions of frames: writers never contend and a re-run only writes the new videos;
* ``videos.parquet``: one row per distinct video (status, reason, fps, frames, grids, tokens);
* ``samples.parquet``: sample_id -> video_key for every video part, in order;
* ``rejected.parquet``: samples whose video failed, in the shared rejected schema.

``video_key`` = sha256 of the file's bytes + the sampling settings (``VideoSamplingConfig.key()``:
frame rule, counts, pixel budgets, hybrid, resize method), so a video already
sampled with the same settings is never decoded again (a failed one is remembered too, as
``<key>.rejected.json``), wherever the file lives.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from assets.contract.conversation import REJECTED_SCHEMA, Rejection
from assets.video.grid import HybridConfig, PlanError
from assets.video.pipe import decode_threads
from assets.video.plan import VideoSamplingConfig

STAGE = "video_frames"
FRAME_SCHEMA = pa.schema(
    [
        pa.field("video_key", pa.string(), nullable=False),
        pa.field("frame", pa.int32(), nullable=False),
        pa.field("frame_index", pa.int64(), nullable=False),
        pa.field("timestamp", pa.float64(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("grid_row", pa.int32(), nullable=False),
        pa.field("png", pa.binary(), nullable=False),
    ]
)
VIDEO_SCHEMA = pa.schema(
    [
        pa.field("video_key", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("reason", pa.string()),
        pa.field("detail", pa.string()),
        pa.field("cached", pa.bool_(), nullable=False),
        pa.field("transcoded", pa.bool_()),
        pa.field("decoder", pa.string()),
        pa.field("video_fps", pa.float64()),
        pa.field("total_frames", pa.int64()),
        pa.field("duration", pa.float64()),
        pa.field("n_frames", pa.int64()),
        pa.field("grids", pa.string()),
        pa.field("visual_tokens", pa.int64()),
        pa.field("hybrid", pa.string()),
        pa.field("frames_file", pa.string()),
    ]
)
SAMPLE_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("video_no", pa.int32(), nullable=False),
        pa.field("video_key", pa.string()),
        pa.field("path", pa.string(), nullable=False),
    ]
)


@dataclass(frozen=True)
class VideoFramesConfig:
    """Settings of the stage (the Dagster config maps onto this)."""

    sampling: VideoSamplingConfig = field(default_factory=VideoSamplingConfig)
    workers: int = 2
    png_compress_level: int = 1
    png_zlib_strategy: int = 3
    """zlib strategy of the PNG encoder: 3 = Z_RLE, which after PNG's row filters is smaller
    than level 6 at level-1 speed on video frames (benchmarks/video_sampling.md, "Frame
    storage"); still plain PNG, any decoder reads it. 0 = zlib's default strategy."""

    decoder: str = "auto"
    """``auto``: the ffmpeg select pipe, checked against decord and falling back to it;
    ``decord``: decord only. Both give the same frames, so this is not part of the cache key."""

    @property
    def encoder(self) -> "PngEncoder":
        return PngEncoder(self.png_compress_level, self.png_zlib_strategy)


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def video_key(content_hash: str, cfg: VideoSamplingConfig) -> str:
    return content_hash[:24] + "-" + hashlib.sha256(cfg.key().encode()).hexdigest()[:8]


@dataclass(frozen=True)
class PngEncoder:
    """Lossless PNG bytes of a frame (a picklable callable: it runs in decode workers).
    ``strategy`` is zlib's (Pillow's ``compress_type``): 0 default, 1 filtered, 3 RLE."""

    level: int = 1
    strategy: int = 3

    def __call__(self, frame) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="PNG", compress_level=self.level, compress_type=self.strategy)
        return buf.getvalue()


def sample_to_shard(
    path: str,
    cfg: VideoSamplingConfig,
    frames_dir: str,
    encoder: PngEncoder = PngEncoder(),
    decode_workers: int | None = None,
    decoder: str = "auto",
) -> dict[str, Any]:
    """Worker: sample one video into ``frames/<key>.parquet`` (or reuse it). Returns the
    ``videos.parquet`` row; never raises for a bad video (the row says why). ``decode_workers``:
    the cores this video may use (``sample_video``'s ``workers``; None = the whole host)."""
    from assets.video.decode import DecodeError, sample_video

    row: dict[str, Any] = {f.name: None for f in VIDEO_SCHEMA}
    row.update(path=path, cached=False, video_key="")
    try:
        digest = file_digest(path)
    except OSError as exc:
        return {**row, "status": "rejected", "reason": "missing_media", "detail": str(exc)}
    key = video_key(digest, cfg)
    row["video_key"] = key
    shard = Path(frames_dir) / f"{key}.parquet"
    failed = Path(frames_dir) / f"{key}.rejected.json"
    if shard.is_file():
        plan = json.loads(pq.read_schema(shard).metadata[b"giraffe_plan"])
        return {**row, **_plan_columns(plan), "status": "ok", "cached": True, "frames_file": str(shard)}
    if failed.is_file():
        return {**row, **json.loads(failed.read_text()), "status": "rejected", "cached": True}
    try:
        got = sample_video(path, cfg, post=encoder, workers=decode_workers, decoder=decoder)
    except (DecodeError, PlanError) as exc:
        failed.write_text(json.dumps({"reason": exc.reason, "detail": exc.detail}))
        return {**row, "status": "rejected", "reason": exc.reason, "detail": exc.detail}
    plan = {**got.plan.to_json(), "transcoded": got.transcoded, "decoder": got.decoder, "decoder_fallback": got.fallback}
    n = len(got.frames)
    table = pa.Table.from_pydict(
        {
            "video_key": [key] * n,
            "frame": list(range(n)),
            "frame_index": got.plan.indices,
            "timestamp": got.plan.timestamps,
            "height": [s[0] for s in got.plan.sizes],
            "width": [s[1] for s in got.plan.sizes],
            "grid_row": got.plan.frame_rows,
            "png": got.frames,
        },
        schema=FRAME_SCHEMA.with_metadata({"giraffe_plan": json.dumps(plan)}),
    )
    tmp = shard.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp, compression="none")  # PNG bytes do not compress further
    tmp.replace(shard)
    return {**row, **_plan_columns(plan), "status": "ok", "frames_file": str(shard)}


def _plan_columns(plan: dict[str, Any]) -> dict[str, Any]:
    return {
        "transcoded": bool(plan.get("transcoded", False)),
        "decoder": plan.get("decoder"),
        "video_fps": plan["video_fps"],
        "total_frames": plan["total_frames"],
        "duration": plan["duration"],
        "n_frames": plan["n_frames"],
        "grids": json.dumps(plan["grids"]),
        "visual_tokens": plan["visual_tokens"],
        "hybrid": json.dumps(plan["hybrid"]) if plan["hybrid"] else None,
    }


@dataclass
class VideoRef:
    sample_id: str
    source: str
    video_no: int
    path: str
    fps: float | None
    max_frames: int | None
    source_rows: list[int]


def video_refs(conversations: pa.Table) -> list[VideoRef]:
    """Every video part of every conversation, in order."""
    refs = []
    for row in conversations.select(["sample_id", "source", "messages", "source_rows"]).to_pylist():
        parts = [p for m in row["messages"] for p in m["content"] if p["type"] == "video"]
        for k, p in enumerate(parts):
            refs.append(VideoRef(row["sample_id"], row["source"], k, p["path"], p["fps"], p["max_frames"], row["source_rows"]))
    return refs


@dataclass
class VideoFramesResult:
    videos: list[dict[str, Any]]
    samples: list[dict[str, Any]]
    rejected: list[dict[str, Any]]

    @property
    def reasons(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.rejected:
            counts[r["reason"]] = counts.get(r["reason"], 0) + 1
        return dict(sorted(counts.items()))


def run_video_frames(refs: list[VideoRef], out_dir: Path, cfg: VideoFramesConfig = VideoFramesConfig()) -> VideoFramesResult:
    """Sample every distinct (path, settings) once, in a process pool of ``cfg.workers``
    processes; write the tables. Each video decodes with its share of the host's cores
    (``decode_threads(videos at once)``: ffmpeg threads and resize threads), so a single video
    gets the whole host and many videos do not oversubscribe it."""
    frames_dir = out_dir / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    jobs: dict[tuple[str, VideoSamplingConfig], None] = {}
    for r in refs:
        jobs.setdefault((r.path, cfg.sampling.with_part(r.fps, r.max_frames)), None)
    job_list = list(jobs)
    at_once = max(1, min(cfg.workers, len(job_list)))
    cores = decode_threads(at_once)
    if at_once > 1:
        ctx = mp.get_context("spawn")  # no fork from inside a threaded Dagster process
        with ProcessPoolExecutor(at_once, mp_context=ctx) as pool:
            futures = [pool.submit(sample_to_shard, p, c, str(frames_dir), cfg.encoder, cores, cfg.decoder) for p, c in job_list]
            rows = [f.result() for f in futures]
    else:  # one video (or one worker): that video gets every core
        rows = [sample_to_shard(p, c, str(frames_dir), cfg.encoder, cores, cfg.decoder) for p, c in job_list]
    by_job = dict(zip(job_list, rows))
    samples, rejected = [], []
    for r in refs:
        v = by_job[(r.path, cfg.sampling.with_part(r.fps, r.max_frames))]
        samples.append({"sample_id": r.sample_id, "source": r.source, "video_no": r.video_no,
                        "video_key": v["video_key"] or None, "path": r.path})
        if v["status"] != "ok":
            detail = f"video {r.video_no} ({Path(r.path).name}): {v['detail']}"
            rejected.append(Rejection(r.sample_id, r.source, STAGE, v["reason"], detail, r.source_rows, r.path).to_row())
    videos = list({v["video_key"] or v["path"]: v for v in rows}.values())
    _write(out_dir / "videos.parquet", videos, VIDEO_SCHEMA)
    _write(out_dir / "samples.parquet", samples, SAMPLE_SCHEMA)
    _write(out_dir / "rejected.parquet", rejected, REJECTED_SCHEMA)
    return VideoFramesResult(videos, samples, rejected)


def _write(path: Path, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
    tmp.replace(path)


def read_frames(shard: str | Path):
    """(plan dict, list of uint8 RGB arrays) of one shard: the way back from storage."""
    import numpy as np
    from PIL import Image

    table = pq.read_table(shard)
    plan = json.loads(table.schema.metadata[b"giraffe_plan"])
    frames = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in table.column("png").to_pylist()]
    return plan, frames


def config_summary(cfg: VideoSamplingConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d["hybrid"] = asdict(cfg.hybrid) if isinstance(cfg.hybrid, HybridConfig) else None
    return d
