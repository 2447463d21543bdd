"""The token_counts stage over every source, streamed and spread over the host's cores.

Each source's ``conversations.parquet`` is read ``batch_size`` rows at a time (the columns
counting needs); a worker process renders the batch, tokenises it in one batched tokenizer
call and adds the image and video tokens (``TokenCounter``). This process writes the counts
and rejections row group by row group, in source order, and keeps only what the checks and
the metadata need: counts by source and reason, the token lengths (8 bytes a sample, for the
histogram), the rows of video samples (for the video_frames -> token_counts edge) and the
first rejections. One pool serves every source, so a small source does not leave cores idle.

``keep`` (a picklable predicate on sample ids, e.g. a hash shard) counts only the samples it
accepts; ``conversations`` then counts only those.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from assets.contract.atomic import atomic_path
from assets.contract.conversation import REJECTED_SCHEMA
from assets.contract.parquet_stream import parquet_batches
from assets.contract.pool import (
    ordered_map,
    parquet_bytes,
    plan_workers,
    portable,
    unportable,
)
from assets.contract.progress import Progress, Sink
from assets.tokens.count import (
    COUNT_SCHEMA,
    MISMATCH_SAMPLE_COLUMNS,
    MISMATCH_VIDEO_COLUMNS,
    STAGE,
    TokenCounter,
    count_table,
    light_processor,
    video_token_mismatches,
)

DEFAULT_BATCH_ROWS = 512
REJECTED_SHOWN = 20
READ_COLUMNS = ["sample_id", "source", "category", "messages", "source_rows"]


def video_plans(video_dir: Path) -> dict[tuple[str, int], object]:
    """(sample_id, video_no) -> grid rows, or (reason, detail) for a rejected video."""
    from assets.video.frames import sample_videos

    return {
        key: json.loads(v["grids"]) if v["status"] == "ok" else (v["reason"], v["detail"])
        for key, v in sample_videos(video_dir).items()
    }


@dataclass
class TokenSummary:
    """What the checks and the metadata of token_counts need, without the counts themselves."""

    conversations: int = 0
    counted: int = 0
    rejected: int = 0
    per_source: dict[str, int] = field(default_factory=dict)
    by_source: dict[str, dict[str, Any]] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    lost: dict[tuple[str, str], int] = field(default_factory=dict)
    rejected_preview: list[dict[str, Any]] = field(default_factory=list)
    total_tokens: int = 0
    video_tokens: int = 0
    image_tokens: int = 0
    samples_with_video: int = 0
    mismatched: list[dict[str, Any]] = field(default_factory=list)
    lengths: list[np.ndarray] = field(default_factory=list, repr=False)
    workers: int = 1

    def n_tokens(self) -> list[int]:
        return np.concatenate(self.lengths).tolist() if self.lengths else []


_worker: dict[str, Any] = {}


def _init_worker(processor_bytes: bytes, plans_bytes: bytes, keep_bytes: bytes | None, quiet_threads: bool) -> None:
    import os

    if quiet_threads:  # one process per core already: the tokenizer's own threads would oversubscribe
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _worker["counter"] = TokenCounter(unportable(processor_bytes), unportable(plans_bytes))
    _worker["keep"] = unportable(keep_bytes) if keep_bytes else None


def count_batch(batch: pa.RecordBatch) -> tuple[pa.Table, list[dict], int]:
    """(counts table, rejections, rows read) for one batch of conversations."""
    rows = batch.to_pylist()
    keep = _worker["keep"]
    if keep is not None:
        rows = [r for r in rows if keep(r["sample_id"])]
    counts, rejected = count_table(rows, _worker["counter"])  # with source_row
    return pa.Table.from_pylist(counts, schema=COUNT_SCHEMA), rejected, len(rows)


def _batches(inputs: Mapping[str, Path], batch_size: int) -> Iterator[pa.RecordBatch]:
    for path in inputs.values():
        yield from parquet_batches(path, batch_size, READ_COLUMNS)


def run_token_counts(
    inputs: Mapping[str, Path],
    processor: Any,
    video_dir: Path,
    out_dir: Path,
    *,
    workers: int | None = None,
    batch_size: int = DEFAULT_BATCH_ROWS,
    keep: Callable[[str], bool] | None = None,
    log: Sink | None = None,
    schema_metadata: Mapping[bytes, bytes] | None = None,
) -> TokenSummary:
    """Count every conversation of ``inputs`` (source -> conversations.parquet) into
    ``out_dir/token_counts.parquet`` and ``out_dir/rejected.parquet`` (atomic). ``workers``
    None or 0: every core. ``schema_metadata`` is added to the counts file's schema."""
    rows_total = sum(pq.read_metadata(p).num_rows for p in inputs.values())
    workers, batch_size = plan_workers(workers, rows_total, batch_size, parquet_bytes(*inputs.values()))
    summary = TokenSummary(workers=workers, per_source=dict.fromkeys(inputs, 0))
    plans = video_plans(video_dir)
    # Only the columns the video edge check reads: videos.parquet also holds every video's plan.
    frame_tables = {video_dir / "samples.parquet": MISMATCH_SAMPLE_COLUMNS, video_dir / "videos.parquet": MISMATCH_VIDEO_COLUMNS}
    if all(p.is_file() for p in frame_tables):
        samples, videos = (pq.read_table(p, columns=list(cols)).to_pylist() for p, cols in frame_tables.items())
    else:
        samples, videos = [], []
    video_ids = pa.array(sorted({s["sample_id"] for s in samples}), type=pa.string())
    video_counts: list[dict[str, Any]] = []
    initargs = (portable(light_processor(processor) if workers > 1 else processor), portable(plans), portable(keep) if keep is not None else None, workers > 1)
    progress = Progress(STAGE, rows_total, log, unit="samples")
    out_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        count_tmp = stack.enter_context(atomic_path(out_dir / "token_counts.parquet"))
        rej_tmp = stack.enter_context(atomic_path(out_dir / "rejected.parquet"))
        schema = COUNT_SCHEMA.with_metadata({**(COUNT_SCHEMA.metadata or {}), **(schema_metadata or {})})
        count_writer = stack.enter_context(pq.ParquetWriter(count_tmp, schema))
        rej_writer = stack.enter_context(pq.ParquetWriter(rej_tmp, REJECTED_SCHEMA))
        for table, rejected, n_rows in ordered_map(count_batch, _batches(inputs, batch_size), workers,
                                                   _init_worker, initargs):
            count_writer.write_table(table)
            if rejected:
                rej_writer.write_table(pa.Table.from_pylist(rejected, schema=REJECTED_SCHEMA))
            _add(summary, table, rejected, n_rows)
            if table.num_rows:
                with_video = pc.or_(pc.greater(table.column("n_videos"), 0), pc.is_in(table.column("sample_id"), value_set=video_ids))
                video_counts += table.filter(with_video).to_pylist()
            progress.update(n_rows)
    progress.close()
    summary.samples_with_video = sum(1 for c in video_counts if c["n_videos"])
    summary.mismatched = video_token_mismatches(video_counts, samples, videos)
    return summary


def _add(summary: TokenSummary, table: pa.Table, rejected: list[dict], n_rows: int) -> None:
    summary.conversations += n_rows
    summary.counted += table.num_rows
    summary.rejected += len(rejected)
    sources = table.column("source").to_pylist()
    n_tokens = table.column("n_tokens").to_numpy()
    for name in dict.fromkeys([*sources, *(r["source"] for r in rejected)]):
        mask = np.fromiter((s == name for s in sources), dtype=bool, count=len(sources))
        here = n_tokens[mask]
        summary.per_source[name] = summary.per_source.get(name, 0) + int(mask.sum()) + sum(r["source"] == name for r in rejected)
        if here.size:
            s = summary.by_source.setdefault(name, {"source": name, "samples": 0, "tokens": 0, "max": 0})
            s["samples"] += int(here.size)
            s["tokens"] += int(here.sum())
            s["max"] = max(s["max"], int(here.max()))
    summary.lengths.append(n_tokens.astype(np.int64))
    summary.total_tokens += int(n_tokens.sum()) if n_tokens.size else 0
    summary.video_tokens += int(pc.sum(table.column("n_video_tokens")).as_py() or 0)
    summary.image_tokens += int(pc.sum(table.column("n_image_tokens")).as_py() or 0)
    for r in rejected:
        summary.reasons[r["reason"]] = summary.reasons.get(r["reason"], 0) + 1
        key = (r["source"], r["reason"])
        summary.lost[key] = summary.lost.get(key, 0) + 1
        if len(summary.rejected_preview) < REJECTED_SHOWN:
            summary.rejected_preview.append(r)
