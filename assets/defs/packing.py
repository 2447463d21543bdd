"""packed asset, partitioned by stage (a thin wrapper over assets.packing).

``packed`` (partition ``8k``, ``32k``, ...) packs every counted sample that fits the stage
with best-fit decreasing, one stratum (category x long) at a time, and records every other
sample as deferred to a longer stage or rejected with a reason. Files follow
docs/packed_shards.md. The asset checks its own output, re-read from disk, in the same step.
"""


import time
from typing import Literal

import dagster as dg
import pyarrow.parquet as pq
from pydantic import Field

from assets.contract.atomic import write_parquet
from assets.contract.markdown import counts_table, histogram_md, markdown_table
from assets.defs.keys import PACKED_KEY, PACKING_GROUP, TOKEN_COUNTS_KEY
from assets.defs.metadata import DATA_TEAM, check_result, column_schema
from assets.defs.partitions import STAGE_CAPACITIES, stage_partitions
from assets.defs.resources import DataStore
from assets.packing.stage import (
    DEFAULT_LONG_THRESHOLD,
    SEQUENCE_SCHEMA,
    audit_accounting,
    audit_fill,
    audit_no_truncation,
    pack_stage,
)


class PackConfig(dg.Config):
    """How a stage is packed."""

    attention_mode: Literal["concat", "isolated"] = Field(
        default="concat",
        description="concat: positions continue across the samples of a sequence (the paper's "
        "multi-turn dialogue); isolated: positions restart per sample (block-diagonal attention).",
    )
    long_threshold: int = Field(default=DEFAULT_LONG_THRESHOLD, description="a sample is long above this many tokens")

@dg.asset(
    key=PACKED_KEY,
    deps=[TOKEN_COUNTS_KEY],
    partitions_def=stage_partitions,
    group_name=PACKING_GROUP,
    code_version="1",
    owners=[DATA_TEAM],
    metadata={"dagster/column_schema": column_schema(SEQUENCE_SCHEMA)},
    kinds={"parquet", "numba"},
    description="Samples concatenated to at most the stage length (best-fit decreasing, never "
    "truncated), homogeneous in category x long; longer samples deferred or rejected with a reason.",
    check_specs=[
        dg.AssetCheckSpec("no_sample_lost", asset=PACKED_KEY, blocking=True, description="counted = packed + deferred + rejected; no sample twice"),
        dg.AssetCheckSpec("no_truncation", asset=PACKED_KEY, blocking=True, description="no sequence over capacity; every sample whole"),
        dg.AssetCheckSpec("pack_fill", asset=PACKED_KEY, description="best fit: no two sequences of a stratum fit in one"),
    ],
)
def packed(context: dg.AssetExecutionContext, config: PackConfig, store: DataStore) -> dg.MaterializeResult:
    stage = context.partition_key
    capacity = STAGE_CAPACITIES[stage]
    counts_path = store.stage_dir("token_counts") / "token_counts.parquet"
    counts = pq.read_table(counts_path, columns=["sample_id", "source", "category", "n_tokens"])
    context.log.info(f"packing {counts.num_rows} counted samples into {stage} ({capacity} tokens, {config.attention_mode})")
    started = time.perf_counter()
    result = pack_stage(
        counts, stage, STAGE_CAPACITIES, long_threshold=config.long_threshold, mode=config.attention_mode, log=context.log.debug
    )
    seconds = time.perf_counter() - started
    out = store.stage_dir("packed", stage)
    write_parquet(result.sequences, out / "sequences.parquet")
    write_parquet(result.assignments, out / "assignments.parquet")
    status = result.status_counts()
    reasons = result.reasons()
    context.log.info(f"{stage}: {result.sequences.num_rows} sequences, fill {result.fill:.4f}, {status} in {seconds:.2f} s")

    # checks, from the files as written
    sequences = pq.read_table(out / "sequences.parquet")
    assignments = pq.read_table(out / "assignments.parquet")
    lost = audit_accounting(counts, assignments, sequences)
    whole = audit_no_truncation(counts, sequences, capacity)
    fill = audit_fill(sequences, capacity)
    lengths = sequences.column("lengths").combine_chunks().flatten().to_pylist()
    fills = [n / capacity for n in sequences.column("n_tokens").to_pylist()]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sequences.num_rows,
            "dagster/column_schema": column_schema(SEQUENCE_SCHEMA),
            "stage": stage,
            "capacity": capacity,
            "mode": config.attention_mode,
            "samples_in": counts.num_rows,
            "packed": status["packed"],
            "deferred": status["deferred"],
            "rejected": status["rejected"],
            "sequences": sequences.num_rows,
            "tokens": result.tokens,
            "fill": round(result.fill, 5),
            "lower_bound": fill.metadata["lower_bound"],
            "seconds": round(seconds, 3),
            "rejects_by_reason": dg.MetadataValue.md(counts_table(reasons)),
            "strata": dg.MetadataValue.md(markdown_table(fill.metadata["strata"])),
            "sequence_fill": dg.MetadataValue.md(histogram_md([round(f, 2) for f in fills], f"sequence fill, {stage}", "tokens / capacity")),
            "sample_lengths": dg.MetadataValue.md(histogram_md(lengths, f"packed sample lengths, {stage}", "tokens")),
            "path": dg.MetadataValue.path(str(out / "sequences.parquet")),
        },
        check_results=[
            check_result("no_sample_lost", PACKED_KEY, lost.passed, lost.problems, **lost.metadata),
            check_result("no_truncation", PACKED_KEY, whole.passed, whole.problems, **whole.metadata),
            check_result("pack_fill", PACKED_KEY, fill.passed, fill.problems, fill=fill.metadata["fill"], lower_bound=fill.metadata["lower_bound"], sequences=fill.metadata["sequences"]),
        ],
    )


