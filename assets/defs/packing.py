"""packed and etvlm_mixture assets, partitioned by stage (thin wrappers over the pure modules).

``packed`` (partition ``8k``, ``32k``, ...) packs every counted sample that fits the stage
with best-fit decreasing, one stratum (category x long) at a time, and records every other
sample as deferred to a longer stage or rejected with a reason. ``etvlm_mixture`` chooses
whole packed sequences to reach the ETVLM token shares. Files follow docs/packed_shards.md.
Both assets check their own output, re-read from disk, in the same step (asset checks).
"""


import time
from pathlib import Path
from typing import Literal

import dagster as dg
import pyarrow.parquet as pq
from pydantic import Field

from assets.contract.markdown import counts_table, histogram_md, markdown_table, png_data_uri
from assets.defs.metadata import DATA_TEAM, column_schema
from assets.defs.partitions import STAGE_CAPACITIES, stage_partitions
from assets.defs.resources import DataStore
from assets.defs.tokens import TOKEN_COUNTS_KEY
from assets.mixture.data_card import data_card_md, fill_png
from assets.mixture.mix import (
    DEFAULT_CATEGORY_SHARES,
    DEFAULT_LONG_SHARE,
    MIXTURE_SCHEMA,
    build_mixture,
    check_shares,
    max_sequence_tokens,
)
from assets.packing.stage import (
    DEFAULT_LONG_THRESHOLD,
    SEQUENCE_SCHEMA,
    audit_accounting,
    audit_fill,
    audit_no_truncation,
    pack_stage,
)

PACKED_KEY = dg.AssetKey(["packed"])
MIXTURE_KEY = dg.AssetKey(["etvlm_mixture"])
PACKING_GROUP = "packing"


class PackConfig(dg.Config):
    """How a stage is packed."""

    attention_mode: Literal["concat", "isolated"] = Field(
        default="concat",
        description="concat: positions continue across the samples of a sequence (the paper's "
        "multi-turn dialogue); isolated: positions restart per sample (block-diagonal attention).",
    )
    long_threshold: int = Field(default=DEFAULT_LONG_THRESHOLD, description="a sample is long above this many tokens")


class MixtureConfig(dg.Config):
    """ETVLM token shares (paper Table 7 and section 2.3) and how they are reached."""

    long_text: float = DEFAULT_CATEGORY_SHARES["long_text"]
    short_image: float = DEFAULT_CATEGORY_SHARES["short_image"]
    interleave: float = DEFAULT_CATEGORY_SHARES["interleave"]
    video: float = DEFAULT_CATEGORY_SHARES["video"]
    long_share: float = Field(default=DEFAULT_LONG_SHARE, description="token share of long (> threshold) samples")
    tolerance: float = Field(default=0.02, description="largest allowed |achieved - target| share")
    seed: int = 0
    total_tokens: int = Field(default=0, description="token budget of the mix; 0: the stage's packed tokens")

    def category_shares(self) -> dict[str, float]:
        return {"long_text": self.long_text, "short_image": self.short_image, "interleave": self.interleave, "video": self.video}


def _check(name: str, asset: dg.AssetKey, passed: bool, problems: list[str], severity: str = "ERROR", **md) -> dg.AssetCheckResult:
    meta = {k: v for k, v in md.items() if not isinstance(v, list | dict)}
    if problems:
        meta["problems"] = dg.MetadataValue.md("\n".join(f"- {p}" for p in problems[:20]))
    return dg.AssetCheckResult(
        check_name=name, asset_key=asset, passed=passed, severity=dg.AssetCheckSeverity(severity), metadata=meta
    )


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
        dg.AssetCheckSpec("no_sample_lost", asset=PACKED_KEY, description="counted = packed + deferred + rejected; no sample twice"),
        dg.AssetCheckSpec("no_truncation", asset=PACKED_KEY, description="no sequence over capacity; every sample whole"),
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
    pq.write_table(result.sequences, out / "sequences.parquet")
    pq.write_table(result.assignments, out / "assignments.parquet")
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
            _check("no_sample_lost", PACKED_KEY, lost.passed, lost.problems, **lost.metadata),
            _check("no_truncation", PACKED_KEY, whole.passed, whole.problems, **whole.metadata),
            _check("pack_fill", PACKED_KEY, fill.passed, fill.problems, fill=fill.metadata["fill"], lower_bound=fill.metadata["lower_bound"], sequences=fill.metadata["sequences"]),
        ],
    )


@dg.asset(
    key=MIXTURE_KEY,
    deps=[PACKED_KEY],
    partitions_def=stage_partitions,
    group_name=PACKING_GROUP,
    code_version="1",
    owners=[DATA_TEAM],
    metadata={"dagster/column_schema": column_schema(MIXTURE_SCHEMA)},
    kinds={"parquet"},
    description="The stage's training set: whole packed sequences chosen (seeded, deterministic) to "
    "reach the ETVLM token shares by category and long/short, with its data card.",
    check_specs=[
        dg.AssetCheckSpec("shares_within_tolerance", asset=MIXTURE_KEY, description="achieved token shares within the configured tolerance of the targets"),
    ],
)
def etvlm_mixture(context: dg.AssetExecutionContext, config: MixtureConfig, store: DataStore) -> dg.MaterializeResult:
    stage = context.partition_key
    capacity = STAGE_CAPACITIES[stage]
    packed_dir = store.stage_dir("packed", stage)
    sequences = pq.read_table(packed_dir / "sequences.parquet")
    assignments = pq.read_table(packed_dir / "assignments.parquet", columns=["status", "reason"])
    mode = (sequences.schema.metadata or {}).get(b"giraffe_mode", b"concat").decode()
    context.log.info(f"mixing {sequences.num_rows} packed sequences of {stage} (seed {config.seed})")
    mix = build_mixture(
        sequences,
        stage,
        category_shares=config.category_shares(),
        long_share=config.long_share,
        total_tokens=config.total_tokens or None,
        seed=config.seed,
    )
    for note in mix.plan.notes:
        context.log.warning(f"{stage}: {note}")
    out = store.stage_dir("etvlm_mixture", stage)
    pq.write_table(mix.table, out / "mixture.parquet")

    written = pq.read_table(out / "mixture.parquet")
    check = check_shares(written, mix.plan, config.tolerance, max_sequence_tokens(sequences))
    status_col = assignments.column("status").to_pylist()
    stage_status = {s: status_col.count(s) for s in ("packed", "deferred", "rejected")}
    reasons: dict[str, int] = {}
    for r in assignments.column("reason").to_pylist():
        if r is not None:
            reasons[r] = reasons.get(r, 0) + 1
    png = fill_png(written, capacity, f"ETVLM mixture {stage}")
    (out / "fill.png").write_bytes(png)
    card_args = dict(
        stage=stage,
        capacity=capacity,
        mode=mode,
        mixture=written,
        share_rows=check.rows,
        stratum_rows=mix.stratum_rows,
        stage_status=stage_status,
        reasons=dict(sorted(reasons.items())),
        notes=mix.plan.notes,
        budget=mix.budget,
    )
    (out / "data_card.md").write_text(data_card_md(**card_args))
    tokens = sum(written.column("n_tokens").to_pylist())
    context.log.info(f"{stage}: {written.num_rows} sequences, {tokens} tokens; shares {'ok' if check.passed else check.problems}")
    shares = {r["share"]: r["achieved"] for r in check.rows}
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": written.num_rows,
            "dagster/column_schema": column_schema(MIXTURE_SCHEMA),
            "stage": stage,
            "mode": mode,
            "tokens": tokens,
            "budget": mix.budget,
            "fill": round(tokens / (written.num_rows * capacity), 5) if written.num_rows else 1.0,
            **{f"share_{k}": v for k, v in shares.items()},
            "shares": dg.MetadataValue.md(markdown_table(check.rows)),
            "data_card": dg.MetadataValue.md(data_card_md(**card_args, image=png_data_uri(png))),
            "path": dg.MetadataValue.path(str(out / "mixture.parquet")),
        },
        check_results=[
            _check(
                "shares_within_tolerance",
                MIXTURE_KEY,
                check.passed,
                check.problems,
                severity=check.severity,
                tolerance=config.tolerance,
                **{f"achieved_{k}": v for k, v in shares.items()},
            )
        ],
    )


packing_assets = [packed, etvlm_mixture]


def stage_paths(data_root: str | Path, stage: str) -> dict[str, Path]:
    """Where a stage's shards live (docs/packed_shards.md)."""
    root = Path(data_root)
    return {
        "sequences": root / "packed" / stage / "sequences.parquet",
        "assignments": root / "packed" / stage / "assignments.parquet",
        "mixture": root / "etvlm_mixture" / stage / "mixture.parquet",
        "data_card": root / "etvlm_mixture" / stage / "data_card.md",
    }
