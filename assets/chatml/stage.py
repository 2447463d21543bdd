"""The chatml stage over a whole source, streamed: record batches in, Parquet row groups out.

The raw ``data.parquet`` is read ``batch_size`` rows at a time; each batch is normalised in
a worker process (adapter, cleaning, media checks: the CPU-bound part) and comes back as an
Arrow table of conversations and a list of rejections. This process only writes them, in
source order, and keeps what the checks need: one bit per raw row for the no-sample-lost
proof, the sample ids seen (duplicates are decided here, across batches), counts by reason
and a few preview rows. Peak memory is set by ``batch_size`` x ``workers``, not by the
source. A source with one batch runs in this process (no pool to start for a small source).

``keep`` (a picklable predicate on sample ids, e.g. a hash shard) restricts the output to
the samples it accepts: the accounting then covers the rows of those samples only.
Grouped sources (several rows per record, ``spec.group_key``) are grouped over the whole
source, so they are read whole: the reconstructed interleave source is small.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from assets.contract.atomic import atomic_path
from assets.contract.cleaning import special_tokens_left
from assets.contract.conversation import (
    CONVERSATION_SCHEMA,
    REJECTED_SCHEMA,
    Conversation,
    NormalizeResult,
    Rejection,
    sample_id_and_json,
)
from assets.contract.media import ImageVerifier, MediaResolver, RejectRow
from assets.contract.parquet_stream import open_parquet, parquet_batches
from assets.contract.pool import (
    ordered_map,
    parquet_bytes,
    plan_workers,
    portable,
    unportable,
)
from assets.contract.progress import Progress, Sink
from assets.sources.hub import read_manifest
from assets.sources.records import decode_json_columns, json_columns

if TYPE_CHECKING:
    from assets.sources.registry import SourceSpec

STAGE = "chatml"
DEFAULT_BATCH_ROWS = 512
PREVIEW_ROWS = 3
REJECTED_SHOWN = 20
LEAKED_SHOWN = 3

SampleFilter = Callable[[str], bool]


@dataclass
class ChatmlSummary:
    """What the checks and the asset's metadata need, without the conversations themselves."""

    source: str
    rows_in: int = 0
    conversations: int = 0
    rejected: int = 0
    undecodable: int = 0
    conv_rows: int = 0
    rejected_rows: int = 0
    images: int = 0
    videos: int = 0
    text_chars: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    lost_rows: dict[str, int] = field(default_factory=dict)
    leaked: int = 0
    leaked_examples: list[tuple[str, list[str]]] = field(default_factory=list)
    preview: list[dict[str, Any]] = field(default_factory=list)
    rejected_preview: list[dict[str, Any]] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    doubled: list[int] = field(default_factory=list)
    workers: int = 1
    batches: int = 0

    @property
    def records(self) -> int:
        """Records the source held: decoded rows plus the records the raw stage could not decode."""
        return self.rows_in + self.undecodable

    def accounting(self) -> tuple[bool, str]:
        """The no-sample-lost proof (same rule and wording as ``normalize.accounting``)."""
        ok = not (self.missing or self.doubled)
        detail = (
            f"{self.rows_in} raw rows = {self.conv_rows} in {self.conversations} conversations + "
            f"{self.rejected_rows} in {self.rejected} rejections"
        )
        if self.undecodable:
            detail += f"; {self.undecodable} undecodable record(s) quarantined by the raw stage"
        if not ok:
            detail += f"; missing rows {self.missing[:10]}, rows counted twice {self.doubled[:10]}, unknown rows []"
        return ok, detail

    def lost(self) -> dict[tuple[str, str], int]:
        """(source, reason) -> raw rows lost (``quality.count_lost``'s shape)."""
        return {(self.source, r): n for r, n in self.lost_rows.items()}

    def _reject(self, row: dict[str, Any]) -> None:
        self.rejected += 1
        self.reasons[row["reason"]] = self.reasons.get(row["reason"], 0) + 1
        self.lost_rows[row["reason"]] = self.lost_rows.get(row["reason"], 0) + max(len(row["source_rows"]), 1)
        self.rejected_rows += len(row["source_rows"])
        if len(self.rejected_preview) < REJECTED_SHOWN:
            self.rejected_preview.append(row)


# ------------------------------------------------------------------ worker side

_worker: dict[str, Any] = {}


def _init_worker(spec_bytes: bytes, roots: list[str], inline_dir: str, verdict_cache: str | None,
                 json_cols: list[str], keep_bytes: bytes | None) -> None:
    verifier = ImageVerifier(Path(verdict_cache) if verdict_cache else None)
    _worker.update(
        spec=unportable(spec_bytes),
        media=MediaResolver([Path(r) for r in roots], Path(inline_dir), verifier),
        json_cols=json_cols,
        keep=unportable(keep_bytes) if keep_bytes else None,
    )


def _records(spec: SourceSpec, rows: list[dict[str, Any]], start: int) -> Iterator[tuple[list[int], Any]]:
    from assets.chatml.normalize import iter_records

    for local, record in iter_records(spec, rows):
        yield [start + i for i in local], record


def normalize_batch(task: tuple[int, pa.RecordBatch | pa.Table]) -> dict[str, Any]:
    """One batch of raw rows (starting at source row ``start``) -> outcomes in record order:
    ``items`` = (sample_id, source_rows, conversation row index or None, rejection or None,
    record JSON for a duplicate's rejection)."""
    from assets.chatml.normalize import clean_messages, validate_messages
    start, batch = task
    spec, media, keep = _worker["spec"], _worker["media"], _worker["keep"]
    rows = decode_json_columns(batch.to_pylist(), _worker["json_cols"])
    conversations: list[dict[str, Any]] = []
    items: list[tuple] = []
    leaked: list[tuple[str, list[str]]] = []
    for source_rows, record in _records(spec, rows, start):
        sample_id, record_json = sample_id_and_json(spec.name, record)
        if keep is not None and not keep(sample_id):
            continue
        record_json = record_json[:4000]

        def rejection(reason: str, detail: str) -> dict[str, Any]:
            return Rejection(sample_id, spec.name, STAGE, reason, detail, source_rows, record_json).to_row()

        if not isinstance(record, dict):
            items.append((sample_id, source_rows, None, rejection("malformed_row", f"record is {type(record).__name__}, expected object"), record_json))
            continue
        try:
            messages = clean_messages(spec.adapter(record, media))
            validate_messages(messages)
        except RejectRow as exc:
            items.append((sample_id, source_rows, None, rejection(exc.reason, exc.detail), record_json))
            continue
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            items.append((sample_id, source_rows, None, rejection("malformed_row", f"{type(exc).__name__}: {exc}"), record_json))
            continue
        tokens = [t for m in messages for p in m["content"] if p["type"] == "text" for t in special_tokens_left(p["text"])]
        if tokens:
            leaked.append((sample_id, tokens))
        items.append((sample_id, source_rows, len(conversations), None, record_json))
        conversations.append(Conversation(sample_id, spec.name, spec.category, messages, source_rows).to_row())
    table = pa.Table.from_pylist(conversations, schema=CONVERSATION_SCHEMA)
    return {"items": items, "table": table, "leaked": dict(leaked), "rows": batch.num_rows}


# ------------------------------------------------------------------ this process


def raw_batches(data_path: Path, batch_size: int, whole: bool = False) -> Iterator[tuple[int, pa.RecordBatch | pa.Table]]:
    """(first row, batch) over a raw ``data.parquet``; one table when ``whole``."""
    pf = open_parquet(data_path)
    if whole:
        yield 0, pf.read()
        return
    start = 0
    for batch in pf.iter_batches(batch_size=batch_size):
        yield start, batch
        start += batch.num_rows


def run_chatml(
    spec: SourceSpec,
    raw_dir: Path,
    out_dir: Path,
    verdict_cache: Path | None = None,
    *,
    workers: int | None = None,
    batch_size: int = DEFAULT_BATCH_ROWS,
    keep: SampleFilter | None = None,
    log: Sink | None = None,
    media_dir: Path | None = None,
) -> ChatmlSummary:
    """Normalise a fetched raw source into ``out_dir``: ``conversations.parquet``,
    ``rejected.parquet`` (with the records the raw stage could not decode) and the inline
    media under ``media/`` (or ``media_dir``, which a source's shards share), each file
    written atomically. ``workers`` None or 0: every core."""
    manifest = read_manifest(raw_dir)
    data_path = Path(manifest["data_path"])
    total = pq.read_metadata(data_path).num_rows
    whole = spec.group_key is not None
    workers, batch_size = (1, max(1, int(batch_size))) if whole else plan_workers(workers, total, batch_size, parquet_bytes(data_path))
    summary = ChatmlSummary(source=spec.name, workers=workers)
    initargs = (
        portable(spec), [str(p) for p in manifest["media_roots"]], str(media_dir or out_dir / "media"),
        str(verdict_cache) if verdict_cache else None, json_columns(pq.read_schema(data_path)),
        portable(keep) if keep is not None else None,
    )
    expected = np.zeros(total, dtype=np.uint8)  # rows of kept samples
    covered = np.zeros(total, dtype=np.uint8)  # rows in an output (more than 1: doubled)
    seen: dict[int, Any] = {}
    progress = Progress(f"chatml/{spec.name}", total, log, unit="rows")
    out_dir.mkdir(parents=True, exist_ok=True)
    conv_path, rej_path = out_dir / "conversations.parquet", out_dir / "rejected.parquet"
    with ExitStack() as stack:
        conv_tmp = stack.enter_context(atomic_path(conv_path))
        rej_tmp = stack.enter_context(atomic_path(rej_path))
        conv_writer = stack.enter_context(pq.ParquetWriter(conv_tmp, CONVERSATION_SCHEMA))
        rej_writer = stack.enter_context(pq.ParquetWriter(rej_tmp, REJECTED_SCHEMA))
        tasks = raw_batches(data_path, batch_size, whole)
        for out in ordered_map(normalize_batch, tasks, workers, _init_worker, initargs):
            summary.batches += 1
            kept_conv: list[int] = []
            rejections: list[dict[str, Any]] = []
            rows_here: list[int] = []
            for sample_id, source_rows, conv_index, rejection, record_json in out["items"]:
                rows_here += source_rows
                key = int(sample_id, 16)
                if key in seen:
                    first = seen[key]
                    first = list(first) if isinstance(first, tuple) else [first]
                    rejection = Rejection(sample_id, spec.name, STAGE, "duplicate_row",
                                          f"same content as source row(s) {first}", source_rows, record_json).to_row()
                    conv_index = None
                else:
                    seen[key] = source_rows[0] if len(source_rows) == 1 else tuple(source_rows)
                if conv_index is not None:
                    kept_conv.append(conv_index)
                    summary.conv_rows += len(source_rows)
                    if sample_id in out["leaked"]:
                        summary.leaked += 1
                        if len(summary.leaked_examples) < LEAKED_SHOWN:
                            summary.leaked_examples.append((sample_id, out["leaked"][sample_id]))
                else:
                    rejections.append(rejection)
                    summary._reject(rejection)
            table = out["table"]
            if len(kept_conv) != table.num_rows:
                table = table.take(pa.array(kept_conv, type=pa.int64()))
            _add_conversations(summary, table)
            conv_writer.write_table(table)
            if rejections:
                rej_writer.write_table(pa.Table.from_pylist(rejections, schema=REJECTED_SCHEMA))
            if rows_here:
                index = np.asarray(rows_here, dtype=np.int64)
                expected[index] = 1
                np.add.at(covered, index, 1)
            progress.update(out["rows"])
        bad_path = raw_dir / "undecodable.parquet"
        if bad_path.is_file():
            for batch in parquet_batches(bad_path, batch_size):
                bad = [r for r in batch.to_pylist() if keep is None or keep(r["sample_id"])]
                for r in bad:
                    summary._reject(r)
                summary.undecodable += len(bad)
                if bad:
                    rej_writer.write_table(pa.Table.from_pylist(bad, schema=REJECTED_SCHEMA))
    progress.close()
    summary.rows_in = int(expected.sum())
    summary.missing = np.flatnonzero(expected & (covered == 0)).tolist()[:100]
    summary.doubled = np.flatnonzero(covered > 1).tolist()[:100]
    return summary


def _add_conversations(summary: ChatmlSummary, table: pa.Table) -> None:
    if not table.num_rows:
        return
    summary.conversations += table.num_rows
    summary.images += int(pc.sum(table.column("n_images")).as_py() or 0)
    summary.videos += int(pc.sum(table.column("n_videos")).as_py() or 0)
    summary.text_chars += int(pc.sum(table.column("n_chars")).as_py() or 0)
    need = PREVIEW_ROWS - len(summary.preview)
    if need > 0:
        summary.preview += table.slice(0, need).select(["sample_id", "messages"]).to_pylist()


def write_chatml(
    spec: SourceSpec, raw_dir: Path, out_dir: Path, verdict_cache: Path | None = None, log: Sink | None = None,
    workers: int | None = 1,
) -> NormalizeResult:
    """``assets.chatml.stage.run_chatml`` (streamed, the asset's path), with the written tables
    read back as a ``NormalizeResult``: for small sources and tests, which look at every
    conversation. ``verdict_cache`` keeps the images' full-decode verdicts for the next runs."""
    summary = run_chatml(spec, raw_dir, out_dir, verdict_cache, workers=workers, log=log)
    result = NormalizeResult(rows_in=summary.rows_in)
    for r in pq.read_table(out_dir / "conversations.parquet").to_pylist():
        result.conversations.append(Conversation(r["sample_id"], r["source"], r["category"], r["messages"], r["source_rows"]))
    result.rejections = [Rejection(**r) for r in pq.read_table(out_dir / "rejected.parquet").to_pylist()]
    return result
