"""The video_frames stage as plain functions: every video a ChatML sample references, sampled
at 2 fps (optionally hybrid resolution) into Parquet shards, in parallel and incrementally.

Layout under the stage folder (readable with pyarrow/polars/datasets, no project code needed):

* ``frames/<video_key><suffix>.parquet``: one row per sampled frame: ``video_key``, ``frame``
  (position in the plan), ``frame_index`` (in the source), ``timestamp`` (s), ``height``,
  ``width``, ``grid_row`` (its ``video_grid_thw`` row) and what the frame store keeps of the
  resized frame (``VideoFramesConfig.frame_store``, ``benchmarks/frame_store.md``):

  - ``png`` (suffix empty): ``png``, lossless PNG bytes (zlib RLE strategy, see
    ``VideoFramesConfig.png_zlib_strategy``);
  - ``webp`` (suffix ``.webp``): ``webp``, lossless WebP bytes (method 0);
  - ``plan`` (suffix ``.plan``): ``digest``, the sha256 of the frame's RGB bytes, and no pixels:
    the collator decodes the planned frames from the source video at training time with the
    same decoder and resize (``load_frames``) and checks every frame against its digest, so a
    different decoder, resize or file can never silently change the training pixels.
    The shard holds kilobytes per video instead of hundreds per video-second.

  The plan (with the store, the source path and its sha256, and the sampling settings) is in
  the file's schema metadata (``giraffe_plan``). The store is in the file name, so changing it
  samples again and leaving it does not. One file per video scales to millions of frames:
  writers never contend and a re-run only writes the new videos;
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
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from assets.contract.atomic import write_json, write_parquet
from assets.contract.conversation import REJECTED_SCHEMA, Rejection
from assets.contract.parquet_stream import open_parquet
from assets.contract.progress import Progress, Sink
from assets.contract.schema import described
from assets.video.decode import DecodeError, read_planned_pipe, sample_video
from assets.video.grid import HybridConfig, PlanError
from assets.video.pipe import PipeMismatch, decode_threads, host_cores
from assets.video.plan import VideoSamplingConfig

STAGE = "video_frames"
_PLAN_FIELDS = [
    pa.field("video_key", pa.string(), nullable=False),
    pa.field("frame", pa.int32(), nullable=False),
    pa.field("frame_index", pa.int64(), nullable=False),
    pa.field("timestamp", pa.float64(), nullable=False),
    pa.field("height", pa.int32(), nullable=False),
    pa.field("width", pa.int32(), nullable=False),
    pa.field("grid_row", pa.int32(), nullable=False),
]
_PLAN_DOCS = {
    "video_key": "sha256 of the file's bytes (24 hex) + hash of the sampling settings: the cache key",
    "frame": "position of the frame in the plan (0, 1, ...)",
    "frame_index": "index of the frame in the source video",
    "timestamp": "time of the frame in the source video, seconds",
    "height": "height after smart_resize, pixels (a multiple of 28)",
    "width": "width after smart_resize, pixels (a multiple of 28)",
    "grid_row": "the row of video_grid_thw this frame belongs to (hybrid plans have several)",
}
FRAME_SCHEMA = described(
    pa.schema([*_PLAN_FIELDS, pa.field("png", pa.binary(), nullable=False)]),
    {**_PLAN_DOCS, "png": "the resized frame, lossless PNG bytes"},
)
WEBP_FRAME_SCHEMA = described(
    pa.schema([*_PLAN_FIELDS, pa.field("webp", pa.binary(), nullable=False)]),
    {**_PLAN_DOCS, "webp": "the resized frame, lossless WebP bytes"},
)
PLAN_FRAME_SCHEMA = described(
    pa.schema([*_PLAN_FIELDS, pa.field("digest", pa.string(), nullable=False)]),
    {**_PLAN_DOCS, "digest": "sha256 (hex) of the resized frame's RGB bytes; the collator decodes the frame "
                             "from the source video and checks it against this"},
)
FRAME_STORES = ("png", "webp", "plan")
"""What a frames shard keeps of each resized frame (``benchmarks/frame_store.md``)."""
STORE_SCHEMAS = {"png": FRAME_SCHEMA, "webp": WEBP_FRAME_SCHEMA, "plan": PLAN_FRAME_SCHEMA}
STORE_COLUMNS = {"png": "png", "webp": "webp", "plan": "digest"}
STORE_SUFFIX = {"png": "", "webp": ".webp", "plan": ".plan"}
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
            pa.field("frame_store", pa.string()),
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
        "frames_file": "its shard: frames/<video_key><store suffix>.parquet",
        "frame_store": "what the shard keeps per frame: png or webp (lossless pixels) or plan (decoded at training time)",
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
    workers: int = 0
    """Videos sampled at once (processes); 0 = every core of the host (``host_cores``). Each
    video decodes with its share of the cores (``decode_threads``)."""

    png_compress_level: int = 1
    png_zlib_strategy: int = 3
    """zlib strategy of the PNG encoder: 3 = Z_RLE, which after PNG's row filters is smaller
    than level 6 at level-1 speed on video frames (benchmarks/video_sampling.md, "Frame
    storage"); still plain PNG, any decoder reads it. 0 = zlib's default strategy."""

    decoder: str = "auto"
    """``auto``: the ffmpeg select pipe, checked against decord and falling back to it;
    ``decord``: decord only. Both give the same frames, so this is not part of the cache key."""

    frame_store: str = "plan"
    """``plan`` | ``png`` | ``webp`` (``FRAME_STORES``): what a shard keeps of each frame.
    Part of the cache key (the shard's file name). ``plan`` is the default for the real scale:
    kilobytes per video instead of 0.3-1 MB per sampled second (178K videos: about 1 GB
    instead of terabytes), for a training-time decode that the data-loader workers hide; see
    ``benchmarks/frame_store.md``. ``png`` keeps lossless pixels beside the data (no source
    videos needed at training time)."""

    def __post_init__(self) -> None:
        if self.frame_store not in FRAME_STORES:
            raise ValueError(f"frame_store must be one of {FRAME_STORES}, got {self.frame_store!r}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0 (0 = every core), got {self.workers}")

    @property
    def processes(self) -> int:
        """Videos at once: ``workers``, or every core of the host when it is 0."""
        return self.workers or host_cores()

    @property
    def encoder(self) -> FrameEncoder:
        if self.frame_store == "png":
            return PngEncoder(self.png_compress_level, self.png_zlib_strategy)
        return store_encoder(self.frame_store)


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


@dataclass(frozen=True)
class WebpEncoder:
    """Lossless WebP bytes of a frame. Method 0 is libwebp's fastest (about PNG level 1's
    encode time); higher methods are 15-20% smaller and 10-30x slower to encode."""

    method: int = 0

    def __call__(self, frame) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="WEBP", lossless=True, quality=0, method=self.method, exact=True)
        return buf.getvalue()


@dataclass(frozen=True)
class FrameDigest:
    """The plan store's "encoding": sha256 of the frame's RGB bytes (and its shape)."""

    def __call__(self, frame) -> str:
        return frame_digest(frame)


FrameEncoder = PngEncoder | WebpEncoder | FrameDigest


def frame_digest(frame) -> str:
    """sha256 (hex) of a uint8 RGB frame's bytes, its shape included."""
    import numpy as np

    frame = np.ascontiguousarray(frame, dtype=np.uint8)
    h = hashlib.sha256(repr(frame.shape).encode())
    h.update(memoryview(frame).cast("B"))
    return h.hexdigest()


def store_encoder(store: str) -> FrameEncoder:
    """The default encoder of a frame store."""
    return {"png": PngEncoder(), "webp": WebpEncoder(), "plan": FrameDigest()}[store]


def shard_path(frames_dir: str | Path, key: str, store: str = "png") -> Path:
    return Path(frames_dir) / f"{key}{STORE_SUFFIX[store]}.parquet"


def sample_to_shard(
    path: str,
    cfg: VideoSamplingConfig,
    frames_dir: str,
    encoder: FrameEncoder | None = None,
    decode_workers: int | None = None,
    decoder: str = "auto",
    store: str = VideoFramesConfig.frame_store,
) -> dict[str, Any]:
    """Worker: sample one video into its shard ``frames/<key><suffix>.parquet`` (or reuse it).
    Returns the ``videos.parquet`` row; never raises for a bad video (the row says why).
    ``decode_workers``: the cores this video may use (``sample_video``'s ``workers``; None = the
    whole host). ``store``: ``FRAME_STORES``; ``encoder`` must produce that store's column
    (None: the store's default, ``store_encoder``)."""
    if store not in FRAME_STORES:
        raise ValueError(f"frame_store must be one of {FRAME_STORES}, got {store!r}")
    encoder = encoder or store_encoder(store)
    row: dict[str, Any] = {f.name: None for f in VIDEO_SCHEMA}
    row.update(path=path, cached=False, video_key="", frame_store=store)
    try:
        digest = file_digest(path)
    except OSError as exc:
        return {**row, "status": "rejected", "reason": "missing_media", "detail": str(exc)}
    key = video_key(digest, cfg)
    row["video_key"] = key
    shard = shard_path(frames_dir, key, store)
    failed = Path(frames_dir) / f"{key}.rejected.json"
    plan = verified_shard_plan(shard, store)
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
    plan = {**got.plan.to_json(), "transcoded": got.transcoded, "decoder": got.decoder, "decoder_fallback": got.fallback,
            "frame_store": store, "source_path": str(path), "source_sha256": digest,
            "sampling": config_summary(cfg)}
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
            STORE_COLUMNS[store]: got.frames,
        },
        schema=STORE_SCHEMAS[store].with_metadata({"giraffe_plan": json.dumps(plan)}),
    )
    write_parquet(table, shard, compression="none")  # PNG/WebP bytes and hex digests do not compress further
    return {**row, **_plan_columns(plan), "status": "ok", "frames_file": str(shard)}


def verified_shard_plan(shard: Path, store: str = "png") -> dict[str, Any] | None:
    """The plan of a frames shard of ``store`` that verifies (footer readable, schema, one row
    per planned frame), else None: a torn or empty shard is recomputed, never trusted for existing."""
    if not shard.is_file():
        return None
    try:
        meta = pq.read_metadata(shard)
        schema = meta.schema.to_arrow_schema()
        plan = json.loads(schema.metadata[b"giraffe_plan"])
        if schema.remove_metadata() != STORE_SCHEMAS[store] or meta.num_rows != int(plan["n_frames"]):
            return None
        if plan.get("frame_store", "png") != store:
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


REF_COLUMNS = ["sample_id", "source", "messages", "source_rows"]


def video_refs(conversations: pa.Table, keep: Callable[[str], bool] | None = None) -> list[VideoRef]:
    """Every video part of every conversation (whose ``sample_id`` ``keep`` accepts), in order."""
    refs = []
    for batch in conversations.select(REF_COLUMNS).to_batches(max_chunksize=REF_BATCH_ROWS):
        refs += _batch_refs(batch, keep)
    return refs


REF_BATCH_ROWS = 2048


def _batch_refs(batch: pa.RecordBatch, keep: Callable[[str], bool] | None) -> list[VideoRef]:
    refs = []
    if "n_videos" in batch.schema.names:  # skip the rows without video before turning any into Python
        import pyarrow.compute as pc

        batch = batch.filter(pc.greater(batch.column("n_videos"), 0))
    for row in batch.select(REF_COLUMNS).to_pylist():
        if keep is not None and not keep(row["sample_id"]):
            continue
        parts = [p for m in row["messages"] for p in m["content"] if p["type"] == "video"]
        for k, p in enumerate(parts):
            refs.append(VideoRef(row["sample_id"], row["source"], k, p["path"], p["fps"], p["max_frames"], row["source_rows"]))
    return refs


def video_refs_from_files(paths: Iterable[str | Path], keep: Callable[[str], bool] | None = None,
                          batch_rows: int = REF_BATCH_ROWS) -> list[VideoRef]:
    """``video_refs`` of ChatML ``conversations.parquet`` files, read in record batches of
    ``batch_rows`` (only the columns needed; rows without video never become Python objects)."""
    refs: list[VideoRef] = []
    for path in paths:
        parquet = open_parquet(path)
        columns = REF_COLUMNS + (["n_videos"] if "n_videos" in parquet.schema_arrow.names else [])
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
            refs += _batch_refs(batch, keep)
    return refs


def materialize_video_frames(
    conversation_paths: Iterable[str | Path],
    out_dir: str | Path,
    cfg: VideoFramesConfig,
    log: Sink | None = None,
    keep: Callable[[str], bool] | None = None,
    frames_dir: str | Path | None = None,
) -> tuple[list[VideoRef], VideoFramesResult]:
    """The stage's compute, for any caller (the Dagster asset, a shard of it, a benchmark):
    the video parts of the given ChatML files (samples ``keep`` accepts, all when None),
    sampled into ``out_dir`` with ``cfg`` (``cfg.workers`` processes, 0 = every core);
    ``frames_dir`` (default ``out_dir/frames``) may be shared by several shards."""
    refs = video_refs_from_files(conversation_paths, keep)
    return refs, run_video_frames(refs, Path(out_dir), cfg, log=log, frames_dir=Path(frames_dir) if frames_dir else None)


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
    refs: list[VideoRef],
    out_dir: Path,
    cfg: VideoFramesConfig = VideoFramesConfig(),
    log: Sink | None = None,
    frames_dir: Path | None = None,
) -> VideoFramesResult:
    """Sample every distinct (path, settings) once, in a process pool of ``cfg.processes``
    processes (``workers``, 0 = every core); write the tables. Each video decodes with its share of the host's cores
    (``decode_threads(videos at once)``: ffmpeg threads and resize threads), so a single video
    gets the whole host and many videos do not oversubscribe it. ``log`` gets the progress
    lines (videos done, rate, ETA). ``frames_dir`` (default ``out_dir/frames``) may be shared by
    several shards' runs: files are named by content key and written atomically."""
    frames_dir = frames_dir or out_dir / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    jobs: dict[tuple[str, VideoSamplingConfig], None] = {}
    for r in refs:
        jobs.setdefault((r.path, cfg.sampling.with_part(r.fps, r.max_frames)), None)
    job_list = list(jobs)
    progress = Progress(STAGE, len(job_list), log, unit="videos", closing_line=False)  # the asset's summary has the time
    at_once = max(1, min(cfg.processes, len(job_list)))
    cores = decode_threads(at_once)
    if at_once > 1:
        ctx = mp.get_context("spawn")  # no fork from inside a threaded Dagster process
        with ProcessPoolExecutor(at_once, mp_context=ctx, initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
            futures = {
                pool.submit(sample_to_shard, p, c, str(frames_dir), cfg.encoder, cores, cfg.decoder, cfg.frame_store): i
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
            rows.append(sample_to_shard(p, c, str(frames_dir), cfg.encoder, cores, cfg.decoder, cfg.frame_store))
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


class FramesUnavailable(Exception):
    """A shard's frames cannot be given back (plan store: the source is gone, changed, or no
    longer decodes to the same pixels); the message says which and why."""


def shard_plan(shard: str | Path) -> dict[str, Any]:
    """The plan in a shard's schema metadata (``frame_store`` defaults to png for old shards)."""
    plan = json.loads(pq.read_schema(shard).metadata[b"giraffe_plan"])
    plan.setdefault("frame_store", "png")
    return plan


def sampling_from_summary(summary: dict[str, Any]) -> VideoSamplingConfig:
    """The ``VideoSamplingConfig`` back from ``config_summary`` (stored in plan shards)."""
    d = dict(summary)
    d["hybrid"] = HybridConfig(**d["hybrid"]) if d.get("hybrid") else None
    return VideoSamplingConfig(**d)


def load_frames(shard: str | Path, workers: int | None = None, decoder: str | None = None):
    """(plan dict, list of uint8 RGB arrays in plan order) of one shard, whatever its store.

    png/webp shards decode their images. A plan shard decodes the planned frames from the
    source video after checking the file's sha256, and checks every frame against its stored
    digest: the frames are bit-identical to the png store's or ``FramesUnavailable`` says why
    not. Where the stage used the ffmpeg pipe, the pipe alone decodes them first (the digests
    are a stronger check than the pipe's decord comparison, which is skipped); otherwise, or
    when that fails, the stage's own ``sample_video`` (decoder, resize, transcode) does.
    ``workers``: the cores one video may use (None = the host; 1 in each of several data-loader workers);
    ``decoder``: None = the one the stage used."""
    import numpy as np
    from PIL import Image

    plan = shard_plan(shard)
    store = plan["frame_store"]
    if store in ("png", "webp"):
        table = pq.read_table(shard, columns=["frame", STORE_COLUMNS[store]]).sort_by("frame")
        frames = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in table.column(STORE_COLUMNS[store]).to_pylist()]
        return plan, frames
    table = pq.read_table(shard, columns=["frame", "digest"]).sort_by("frame")
    source = plan["source_path"]
    try:
        digest = file_digest(source)
    except OSError as exc:
        raise FramesUnavailable(f"source video of {Path(shard).name} unreadable: {source}: {exc}") from None
    if digest != plan["source_sha256"]:
        raise FramesUnavailable(f"source video {source} changed since it was planned (sha256 {digest[:12]}, "
                                f"planned {plan['source_sha256'][:12]}): run video_frames again")
    wanted = table.column("digest").to_pylist()
    cfg = sampling_from_summary(plan["sampling"])
    if decoder is None and plan.get("decoder") == "ffmpeg-pipe" and not plan.get("transcoded"):
        try:  # the fast path: the pipe alone, every frame checked against its digest right here
            frames = read_planned_pipe(source, plan["indices"], [tuple(x) for x in plan["sizes"]],
                                       (plan["height"], plan["width"]), cfg.resize, workers)
            if len(frames) == len(wanted) and all(frame_digest(f) == d for f, d in zip(frames, wanted)):
                return plan, frames
        except (PipeMismatch, OSError):
            pass  # the full path below says what is wrong, or gives the frames through decord
    use = decoder or ("auto" if plan.get("decoder") == "ffmpeg-pipe" else "decord")
    try:
        got = sample_video(source, cfg, workers=workers, decoder=use)
    except (DecodeError, PlanError) as exc:
        raise FramesUnavailable(f"source video {source} no longer decodes: {exc.reason}: {exc.detail}") from None
    if got.plan.indices != plan["indices"] or [list(x) for x in got.plan.sizes] != plan["sizes"]:
        raise FramesUnavailable(f"source video {source}: the plan differs from the stored one")
    bad = [k for k, (f, d) in enumerate(zip(got.frames, wanted)) if frame_digest(f) != d]
    if bad or len(got.frames) != len(wanted):
        raise FramesUnavailable(f"source video {source}: frames {bad[:5]} decode to other pixels than the stage's "
                                f"({got.decoder}; decoder or resize changed?): run video_frames again")
    return plan, got.frames


def read_frames(shard: str | Path):
    """(plan dict, list of uint8 RGB arrays) of one shard: the way back from storage."""
    return load_frames(shard)


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
