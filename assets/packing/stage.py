"""Pack one training stage: which samples it takes, and its sequences (no Dagster).

Every counted sample gets exactly one status at every stage (see docs/packed_shards.md):

* ``packed``: it fits the stage (``n_tokens <= capacity``) and sits in one sequence;
* ``deferred``: longer than this stage but a longer stage takes it (reason
  ``longer_than_stage``, the detail names the smallest stage that fits);
* ``rejected``: longer than the largest stage (``longer_than_largest_stage``), or a bad row
  (``non_positive_length``, ``duplicate_sample_id``): never cut, never silently dropped.

Sequences are homogeneous in a *stratum* = (category, long), long meaning more than
``long_threshold`` tokens (8K, the paper's "long"), so that the mixture can reach token shares
by category and by length exactly by choosing whole sequences. Each stratum is packed on its
own with best-fit decreasing (``assets.packing.kernel.pack``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assets.contract.categories import CATEGORIES
from assets.contract.schema import described
from assets.packing.kernel import pack

MODES = ("concat", "isolated")
DEFAULT_LONG_THRESHOLD = 8192

SEQUENCE_DESCRIPTIONS = {
    "seq_id": "<stage>-<stratum>-<n>: one packed training sequence",
    "stage": "the stage partition (8k, 32k, ...)",
    "capacity": "the stage's sequence length in tokens",
    "mode": "concat (positions continue across samples) or isolated (restart per sample)",
    "category": "ETVLM category of every sample in it (sequences are homogeneous)",
    "long": "true when its samples are long (above the long threshold)",
    "sample_ids": "the samples, in packing order",
    "sources": "each sample's source, aligned with sample_ids",
    "offsets": "token offset of each sample in the sequence",
    "lengths": "token length of each sample (whole, never truncated)",
    "n_tokens": "tokens used (sum of lengths, at most capacity)",
}
SEQUENCE_SCHEMA = described(
    pa.schema(
        [
            pa.field("seq_id", pa.string(), nullable=False),
            pa.field("stage", pa.string(), nullable=False),
            pa.field("capacity", pa.int64(), nullable=False),
            pa.field("mode", pa.string(), nullable=False),
            pa.field("category", pa.string(), nullable=False),
            pa.field("long", pa.bool_(), nullable=False),
            pa.field("sample_ids", pa.list_(pa.string()), nullable=False),
            pa.field("sources", pa.list_(pa.string()), nullable=False),
            pa.field("offsets", pa.list_(pa.int64()), nullable=False),
            pa.field("lengths", pa.list_(pa.int64()), nullable=False),
            pa.field("n_tokens", pa.int64(), nullable=False),
        ]
    ),
    SEQUENCE_DESCRIPTIONS,
)

ASSIGNMENT_SCHEMA = described(
    pa.schema(
        [
            pa.field("sample_id", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("category", pa.string(), nullable=False),
            pa.field("n_tokens", pa.int64(), nullable=False),
            pa.field("long", pa.bool_(), nullable=False),
            pa.field("status", pa.string(), nullable=False),
            pa.field("seq_id", pa.string()),
            pa.field("offset", pa.int64()),
            pa.field("reason", pa.string()),
            pa.field("detail", pa.string()),
        ]
    ),
    {
        "sample_id": "a counted sample (token_counts)",
        "source": "its source",
        "category": "its ETVLM category",
        "n_tokens": "its exact token length",
        "long": "above the long threshold",
        "status": "packed, deferred (to a longer stage) or rejected",
        "seq_id": "the sequence it is packed in (packed only)",
        "offset": "its token offset in that sequence (packed only)",
        "reason": "why it was deferred or rejected",
        "detail": "the numbers behind the reason",
    },
)


def schema_with_mode(schema: pa.Schema, stage: str, capacity: int, mode: str) -> pa.Schema:
    """The sequence schema with the attention mode, stage and capacity in its metadata."""
    return schema.with_metadata(
        {b"giraffe_mode": mode.encode(), b"giraffe_stage": stage.encode(), b"giraffe_capacity": str(capacity).encode()}
    )


def stratum_name(category: str, long: bool) -> str:
    return f"{category}-{'long' if long else 'short'}"


def stratum_order(strata) -> list[tuple[str, bool]]:
    """Known categories first in their canonical order, short before long; others after."""
    rank = {c: i for i, c in enumerate(CATEGORIES)}
    return sorted(set(strata), key=lambda s: (rank.get(s[0], len(rank)), s[0], s[1]))


@dataclass(frozen=True)
class StagePack:
    """A stage's sequences and the status of every counted sample."""

    stage: str
    capacity: int
    mode: str
    sequences: pa.Table  # SEQUENCE_SCHEMA (+ mode metadata)
    assignments: pa.Table  # ASSIGNMENT_SCHEMA, in the input's row order

    def status_counts(self) -> dict[str, int]:
        col = self.assignments.column("status").to_numpy(zero_copy_only=False)
        return {s: int((col == s).sum()) for s in ("packed", "deferred", "rejected")}

    def reasons(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.assignments.column("reason").to_pylist():
            if r is not None:
                out[r] = out.get(r, 0) + 1
        return dict(sorted(out.items()))

    @property
    def tokens(self) -> int:
        return int(pc.sum(self.sequences.column("n_tokens")).as_py() or 0)

    @property
    def fill(self) -> float:
        n = self.sequences.num_rows
        return self.tokens / (n * self.capacity) if n else 1.0


def pack_stage(
    counts: pa.Table,
    stage: str,
    capacities: Mapping[str, int],
    *,
    long_threshold: int = DEFAULT_LONG_THRESHOLD,
    mode: str = "concat",
    log: Callable[[str], None] | None = None,
) -> StagePack:
    """Pack the samples of ``counts`` (``sample_id, source, category, n_tokens``) that fit
    ``stage``; ``capacities`` is every stage's capacity (to name where longer samples go).
    ``log`` gets one progress line per stratum."""
    if long_threshold < 0:
        raise ValueError(f"long_threshold must be >= 0, got {long_threshold}")
    if mode not in MODES:
        raise ValueError(f"attention mode must be one of {MODES}, got {mode!r}")
    if stage not in capacities:
        raise ValueError(f"unknown stage {stage!r}; stages are {list(capacities)}")
    missing = {"sample_id", "source", "category", "n_tokens"} - set(counts.column_names)
    if missing:
        raise ValueError(f"token counts lack columns {sorted(missing)}")
    capacity = int(capacities[stage])
    by_cap = sorted(capacities.items(), key=lambda kv: kv[1])
    largest_name, largest = by_cap[-1]

    ids = counts.column("sample_id").to_pylist()
    sources = counts.column("source").to_pylist()
    cats = counts.column("category").to_pylist()
    n_tok = counts.column("n_tokens").to_numpy(zero_copy_only=False).astype(np.int64)
    n = len(ids)
    long = n_tok > long_threshold

    status = np.full(n, "packed", dtype=object)
    reason = np.full(n, None, dtype=object)
    detail = np.full(n, None, dtype=object)
    seen: set[str] = set()
    for i, sid in enumerate(ids):
        if sid in seen:
            status[i], reason[i], detail[i] = "rejected", "duplicate_sample_id", "sample_id already counted above"
        seen.add(sid)
    bad = (n_tok < 1) & (status == "packed")
    status[bad], reason[bad] = "rejected", "non_positive_length"
    for i in np.flatnonzero(bad):
        detail[i] = f"{int(n_tok[i])} tokens"
    too_long = (n_tok > capacity) & (status == "packed")
    for i in np.flatnonzero(too_long):
        v = int(n_tok[i])
        if v > largest:
            status[i], reason[i] = "rejected", "longer_than_largest_stage"
            detail[i] = f"{v} tokens > {largest} (largest stage {largest_name})"
        else:
            goes = next(name for name, cap in by_cap if cap >= v)
            status[i], reason[i] = "deferred", "longer_than_stage"
            detail[i] = f"{v} tokens > {capacity} ({stage}); goes to {goes}"

    seq_of = np.full(n, None, dtype=object)
    offset = np.full(n, -1, dtype=np.int64)
    batches = []
    fits = status == "packed"
    strata: dict[tuple[str, bool], list[int]] = {}
    for i in np.flatnonzero(fits):
        strata.setdefault((cats[i], bool(long[i])), []).append(int(i))
    ids_arr = np.array(ids, dtype=object)
    src_arr = np.array(sources, dtype=object)
    for cat, is_long in stratum_order(strata):
        rows = np.asarray(strata[(cat, is_long)], dtype=np.int64)
        result = pack(n_tok[rows], capacity)
        if log:
            log(
                f"{stage} {stratum_name(cat, is_long)}: {rows.size} samples -> {result.n_bins} sequences "
                f"(fill {result.fill:.4f}, lower bound {result.lower_bound})"
            )
        prefix = f"{stage}-{stratum_name(cat, is_long)}-"
        seq_names = np.array([f"{prefix}{b}" for b in range(result.n_bins)], dtype=object)
        seq_of[rows] = seq_names[result.bin_of]
        offset[rows] = result.offset
        # samples of each sequence in offset order, as flat arrays + list offsets
        order = np.lexsort((result.offset, result.bin_of))
        members = rows[order]
        starts = np.zeros(result.n_bins + 1, dtype=np.int32)
        np.cumsum(np.bincount(result.bin_of, minlength=result.n_bins), out=starts[1:])
        batches.append(
            pa.table(
                {
                    "seq_id": pa.array(seq_names.tolist(), pa.string()),
                    "stage": pa.array([stage] * result.n_bins, pa.string()),
                    "capacity": pa.array(np.full(result.n_bins, capacity, np.int64)),
                    "mode": pa.array([mode] * result.n_bins, pa.string()),
                    "category": pa.array([cat] * result.n_bins, pa.string()),
                    "long": pa.array(np.full(result.n_bins, is_long)),
                    "sample_ids": pa.ListArray.from_arrays(starts, pa.array(ids_arr[members].tolist(), pa.string())),
                    "sources": pa.ListArray.from_arrays(starts, pa.array(src_arr[members].tolist(), pa.string())),
                    "offsets": pa.ListArray.from_arrays(starts, pa.array(result.offset[order])),
                    "lengths": pa.ListArray.from_arrays(starts, pa.array(n_tok[members])),
                    "n_tokens": pa.array(result.bin_tokens),
                },
                schema=SEQUENCE_SCHEMA,
            )
        )
    schema = schema_with_mode(SEQUENCE_SCHEMA, stage, capacity, mode)
    sequences = pa.concat_tables(batches).cast(schema) if batches else schema.empty_table()
    assignments = pa.table(
        {
            "sample_id": pa.array(ids, pa.string()),
            "source": pa.array(sources, pa.string()),
            "category": pa.array(cats, pa.string()),
            "n_tokens": pa.array(n_tok),
            "long": pa.array(long),
            "status": pa.array(status.tolist(), pa.string()),
            "seq_id": pa.array(seq_of.tolist(), pa.string()),
            "offset": pa.array(np.where(fits, offset, 0), mask=~fits),
            "reason": pa.array(reason.tolist(), pa.string()),
            "detail": pa.array(detail.tolist(), pa.string()),
        },
        schema=ASSIGNMENT_SCHEMA,
    )
    return StagePack(stage, capacity, mode, sequences, assignments)


# --- audits: what the asset checks assert, recomputed from the written tables ----------


@dataclass(frozen=True)
class Audit:
    passed: bool
    metadata: dict
    problems: list[str]


def _flat(sequences: pa.Table, column: str) -> np.ndarray:
    return pc.list_flatten(sequences.column(column)).to_numpy(zero_copy_only=False)


def audit_accounting(counts: pa.Table, assignments: pa.Table, sequences: pa.Table) -> Audit:
    """in = packed + deferred + rejected; every packed sample is in exactly one sequence."""
    problems: list[str] = []
    status = assignments.column("status").to_numpy(zero_copy_only=False)
    n_in = counts.num_rows
    by = {s: int((status == s).sum()) for s in ("packed", "deferred", "rejected")}
    if assignments.num_rows != n_in:
        problems.append(f"{n_in} counted samples but {assignments.num_rows} assignment rows")
    if sum(by.values()) != assignments.num_rows:
        problems.append(f"unknown statuses: {sorted(set(status.tolist()) - set(by))}")
    if assignments.column("sample_id").to_pylist() != counts.column("sample_id").to_pylist():
        problems.append("assignment sample_ids differ from the token counts (order or content)")
    in_seqs = _flat(sequences, "sample_ids")
    uniq, n_seen = np.unique(in_seqs, return_counts=True) if in_seqs.size else (in_seqs, in_seqs)
    dup = uniq[n_seen > 1] if in_seqs.size else []
    if len(dup):
        problems.append(f"{len(dup)} samples in more than one place, e.g. {dup[0]}")
    packed_ids = set(np.asarray(assignments.column("sample_id").to_numpy(zero_copy_only=False))[status == "packed"].tolist())
    if packed_ids != set(in_seqs.tolist()):
        problems.append(
            f"{len(packed_ids - set(in_seqs.tolist()))} packed samples missing from sequences, "
            f"{len(set(in_seqs.tolist()) - packed_ids)} in sequences but not marked packed"
        )
    md = {"in": n_in, **by, "in_sequences": int(in_seqs.size), "duplicates": int(len(dup))}
    return Audit(not problems, md, problems)


def audit_no_truncation(counts: pa.Table, sequences: pa.Table, capacity: int) -> Audit:
    """No sequence over capacity; each sample whole (its length = its token count) and the
    offsets are the running sum of lengths."""
    problems: list[str] = []
    n_tokens = sequences.column("n_tokens").to_numpy(zero_copy_only=False)
    over = int((n_tokens > capacity).sum())
    if over:
        problems.append(f"{over} sequences over the capacity {capacity}")
    lengths = _flat(sequences, "lengths").astype(np.int64)
    offsets = _flat(sequences, "offsets").astype(np.int64)
    sizes = pc.list_value_length(sequences.column("lengths")).to_numpy(zero_copy_only=False).astype(np.int64)
    first = np.cumsum(sizes) - sizes  # flat index of each sequence's first sample
    running = np.cumsum(lengths) - lengths  # tokens before each sample in the flat array
    expected = running - running[np.repeat(first, sizes)]
    if not np.array_equal(offsets, expected):
        problems.append(f"{int((offsets != expected).sum())} offsets are not the running sum of lengths")
    if (sizes == 0).any():
        problems.append(f"{int((sizes == 0).sum())} empty sequences")
    elif lengths.size and not np.array_equal(np.add.reduceat(lengths, first), n_tokens):
        problems.append("a sequence's n_tokens differs from the sum of its lengths")
    truth = dict(zip(counts.column("sample_id").to_pylist(), counts.column("n_tokens").to_pylist()))
    ids = _flat(sequences, "sample_ids")
    cut = [sid for sid, v in zip(ids.tolist(), lengths.tolist()) if truth.get(sid) != v]
    if cut:
        problems.append(f"{len(cut)} samples whose length differs from their token count, e.g. {cut[0]}")
    md = {"sequences": int(sequences.num_rows), "max_tokens": int(n_tokens.max()) if n_tokens.size else 0, "capacity": capacity}
    return Audit(not problems, md, problems)


def stratum_fill(sequences: pa.Table, capacity: int) -> list[dict]:
    """Per stratum: sequences, samples, tokens, fill and the lower bound ceil(tokens/capacity)."""
    cats = np.array(sequences.column("category").to_pylist(), dtype=object)
    longs = sequences.column("long").to_numpy(zero_copy_only=False).astype(bool)
    n_tokens = sequences.column("n_tokens").to_numpy(zero_copy_only=False)
    sizes = pc.list_value_length(sequences.column("sample_ids")).to_numpy(zero_copy_only=False)
    rows = []
    for cat, is_long in stratum_order(zip(cats.tolist(), longs.tolist())):
        m = (cats == cat) & (longs == is_long)
        tok = int(n_tokens[m].sum())
        rows.append(
            {
                "stratum": stratum_name(cat, is_long),
                "sequences": int(m.sum()),
                "samples": int(sizes[m].sum()),
                "tokens": tok,
                "fill": round(tok / (int(m.sum()) * capacity), 4),
                "lower_bound": -(-tok // capacity),
                "_two_smallest": int(np.sort(n_tokens[m])[:2].sum()) if m.sum() > 1 else None,
            }
        )
    return rows


def audit_fill(sequences: pa.Table, capacity: int) -> Audit:
    """Best fit leaves no two sequences of a stratum that would fit together in one: for each
    stratum the two emptiest sequences hold more than the capacity."""
    rows = stratum_fill(sequences, capacity)
    problems = [
        f"{r['stratum']}: its two emptiest sequences hold {r['_two_smallest']} <= {capacity} tokens"
        for r in rows
        if r["_two_smallest"] is not None and r["_two_smallest"] <= capacity
    ]
    for r in rows:
        r.pop("_two_smallest")
    tokens = sum(r["tokens"] for r in rows)
    n = sum(r["sequences"] for r in rows)
    md = {"fill": round(tokens / (n * capacity), 5) if n else 1.0, "sequences": n, "lower_bound": sum(r["lower_bound"] for r in rows)}
    return Audit(not problems, {**md, "strata": rows}, problems)
