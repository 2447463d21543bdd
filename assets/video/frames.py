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
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from assets.contract.atomic import write_json, write_parquet
from assets.contract.conversation import REJECTED_SCHEMA, Rejection
from assets.contract.progress import Progress, Sink
from assets.contract.schema import described
from assets.video.decode import DecodeError, sample_video
from assets.video.grid import HybridConfig, PlanError
from assets.video.pipe import decode_threads
from assets.video.plan import VideoSamplingConfig

STAGE = "video_frames"
FRAME_SCHEMA = described(
    pa.schema(
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
    ),
    {
        "video_key": "sha256 of the file's bytes (24 hex) + hash of the sampling settings: the cache key",
        "frame": "position of the frame in the plan (0, 1, ...)",
        "frame_index": "index of the frame in the source video",
        "timestamp": "time of the frame in the source video, seconds",
        "height": "height after smart_resize, pixels (a multiple of 28)",
        "width": "width after smart_resize, pixels (a multiple of 28)",
        "grid_row": "the row of video_grid_thw this frame belongs to (hybrid plans have several)",
        "png": "the resized frame, lossless PNG bytes",
    },
)
VIDEO_SCHEMA = described(
    pa.schema(
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
    ),
    {
        "video_key": "the cache key (content hash + settings); empty for a file that could not be read",
        "path": "the video file as the ChatML part names it",
        "status": "ok or rejected",
        "reason": "why it was rejected (missing_media, decode_failed, ...)",
        "detail": "the decoder's message",
        "cached": "true when an earlier run had sampled it with the same settings",
        "transcoded": "true when ffmpeg had to transcode an unreadable file first",
        "decoder": "which decoder produced the frames (ffmpeg select pipe or decord)",
        "video_fps": "the file's frame rate",
        "total_frames": "frames in the file",
        "duration": "length of the video, seconds",
        "n_frames": "frames sampled (rows of its shard)",
        "grids": "video_grid_thw rows as JSON [[t, h, w], ...]",
        "visual_tokens": "tokens the frames cost the model (sum of t x h x w / 4)",
        "hybrid": "hybrid resolution (L, m, s) as JSON when applied, else empty",
        "frames_file": "its shard: frames/<video_key>.parquet",
    },
)
SAMPLE_SCHEMA = described(
    pa.schema(
        [
            pa.field("sample_id", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("video_no", pa.int32(), nullable=False),
            pa.field("video_key", pa.string()),
            pa.field("path", pa.string(), nullable=False),
        ]
    ),
    {
        "sample_id": "the ChatML sample",
        "source": "its source",
        "video_no": "which video part of the sample (0, 1, ...)",
        "video_key": "the sampled video (videos.parquet); empty when it was rejected",
        "path": "the video file",
    },
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
    plan = verified_shard_plan(shard)
    if plan is not None:
        return {**row, **_plan_columns(plan), "status": "ok", "cached": True, "frames_file": str(shard)}
    verdict = verified_rejection(failed)
    if verdict is not None:
        return {**row, **verdict, "status": "rejected", "cached": True}
    try:
        got = sample_video(path, cfg, post=encoder, workers=decode_workers, decoder=decoder)
    except (DecodeError, PlanError) as exc:
        write_json(failed, {"reason": exc.reason, "detail": exc.detail})
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
    write_parquet(table, shard, compression="none")  # PNG bytes do not compress further
    return {**row, **_plan_columns(plan), "status": "ok", "frames_file": str(shard)}


def verified_shard_plan(shard: Path) -> dict[str, Any] | None:
    """The plan of a frames shard that verifies (footer readable, schema, one row per planned
    frame), else None: a torn or empty shard is recomputed, never trusted for existing."""
    if not shard.is_file():
        return None
    try:
        meta = pq.read_metadata(shard)
        schema = meta.schema.to_arrow_schema()
        plan = json.loads(schema.metadata[b"giraffe_plan"])
        if schema.remove_metadata() != FRAME_SCHEMA or meta.num_rows != int(plan["n_frames"]):
            return None
        _plan_columns(plan)
    except Exception:  # any unreadable shard means "not done"
        return None
    return plan


def verified_rejection(path: Path) -> dict[str, str] | None:
    """A remembered decode failure that parses (``reason`` and ``detail`` strings), else None."""
    if not path.is_file():
        return None
    try:
        verdict = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(verdict, dict) or not all(isinstance(verdict.get(k), str) for k in ("reason", "detail")):
        return None
    return {"reason": verdict["reason"], "detail": verdict["detail"]}


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


def run_video_frames(
    refs: list[VideoRef], out_dir: Path, cfg: VideoFramesConfig = VideoFramesConfig(), log: Sink | None = None
) -> VideoFramesResult:
    """Sample every distinct (path, settings) once, in a process pool of ``cfg.workers``
    processes; write the tables. Each video decodes with its share of the host's cores
    (``decode_threads(videos at once)``: ffmpeg threads and resize threads), so a single video
    gets the whole host and many videos do not oversubscribe it. ``log`` gets the progress
    lines (videos done, rate, ETA)."""
    frames_dir = out_dir / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    jobs: dict[tuple[str, VideoSamplingConfig], None] = {}
    for r in refs:
        jobs.setdefault((r.path, cfg.sampling.with_part(r.fps, r.max_frames)), None)
    job_list = list(jobs)
    progress = Progress(STAGE, len(job_list), log, unit="videos", closing_line=False)  # the asset's summary has the time
    at_once = max(1, min(cfg.workers, len(job_list)))
    cores = decode_threads(at_once)
    if at_once > 1:
        ctx = mp.get_context("spawn")  # no fork from inside a threaded Dagster process
        with ProcessPoolExecutor(at_once, mp_context=ctx, initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
            futures = {
                pool.submit(sample_to_shard, p, c, str(frames_dir), cfg.encoder, cores, cfg.decoder): i
                for i, (p, c) in enumerate(job_list)
            }
            done: dict[int, dict[str, Any]] = {}
            for future in as_completed(futures):
                done[futures[future]] = future.result()
                progress.update()
            rows = [done[i] for i in range(len(job_list))]
    else:  # one video (or one worker): that video gets every core
        rows = []
        for p, c in job_list:
            rows.append(sample_to_shard(p, c, str(frames_dir), cfg.encoder, cores, cfg.decoder))
            progress.update()
    progress.close()
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
    write_parquet(pa.Table.from_pylist(rows, schema=schema), path)


def die_with_parent(parent_pid: int, poll_s: float = 0.5) -> None:
    """Worker initializer: end this process when the step process that started it is gone
    (killed with SIGKILL it cannot shut its pool down, and orphaned workers would go on
    writing shards). Linux delivers SIGKILL at the parent's death (``PR_SET_PDEATHSIG``);
    everywhere a daemon thread also watches for the parent's pid to change."""
    import signal
    import sys
    import threading
    import time

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(1)

    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def read_frames(shard: str | Path):
    """(plan dict, list of uint8 RGB arrays) of one shard: the way back from storage."""
    import numpy as np
    from PIL import Image

    table = pq.read_table(shard)
    plan = json.loads(table.schema.metadata[b"giraffe_plan"])
    frames = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in table.column("png").to_pylist()]
    return plan, frames


def sample_videos(video_dir: str | Path) -> dict[tuple[str, int], dict[str, Any]]:
    """(sample_id, video_no) -> its video's row in ``videos.parquet`` plus the sample's own
    ``sample_path`` and ``video_key``; a sample whose video has no row gets ``status: missing``.

    The one join of ``samples.parquet`` with ``videos.parquet``: token counting reads the grids
    from it and the collator the frames file, so both see the same video for a sample."""
    video_dir = Path(video_dir)
    samples_path, videos_path = video_dir / "samples.parquet", video_dir / "videos.parquet"
    if not samples_path.is_file() or not videos_path.is_file():
        return {}
    videos = {v["video_key"]: v for v in pq.read_table(videos_path).to_pylist()}
    missing = {"status": "missing", "reason": "missing", "detail": "video not in videos.parquet"}
    return {
        (s["sample_id"], s["video_no"]): {**videos.get(s["video_key"], missing), "sample_path": s["path"],
                                          "video_key": s["video_key"]}
        for s in pq.read_table(samples_path).to_pylist()
    }


def config_summary(cfg: VideoSamplingConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d["hybrid"] = asdict(cfg.hybrid) if isinstance(cfg.hybrid, HybridConfig) else None
    return d
