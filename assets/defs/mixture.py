"""etvlm_mixture asset, partitioned by stage (a thin wrapper over assets.mixture).

``etvlm_mixture`` (partition ``8k``, ``32k``, ...) chooses whole packed sequences to reach
the ETVLM token shares and writes the stage's data card. Files follow docs/packed_shards.md.
The asset checks its own output, re-read from disk, in the same step.
"""



import dagster as dg
import pyarrow.parquet as pq
import pydantic
from pydantic import Field

from assets.contract.atomic import write_bytes, write_parquet, write_text
from assets.contract.categories import CATEGORIES
from assets.contract.markdown import markdown_table, png_data_uri
from assets.defs.keys import MIXTURE_KEY, PACKED_KEY, PACKING_GROUP
from assets.defs.metadata import DATA_TEAM, check_result, column_schema
from assets.defs.partitions import STAGE_CAPACITIES, stage_partitions
from assets.defs.resources import DataStore
from assets.mixture.data_card import data_card_md, fill_png
from assets.mixture.mix import (
    DEFAULT_CATEGORY_SHARES,
    DEFAULT_LONG_SHARE,
    MIXTURE_SCHEMA,
    build_mixture,
    check_shares,
    max_sequence_tokens,
)

# One share field per category (long_text, short_image, ...), derived from the category list.
_CategoryShares = pydantic.create_model(
    "CategoryShares",
    __base__=dg.Config,
    **{c: (float, Field(default=DEFAULT_CATEGORY_SHARES[c], description=f"token share of {c}")) for c in CATEGORIES},
)


class MixtureConfig(_CategoryShares):
    """ETVLM token shares (paper Table 7 and section 2.3) and how they are reached."""

    long_share: float = Field(default=DEFAULT_LONG_SHARE, description="token share of long (> threshold) samples")
    tolerance: float = Field(default=0.02, description="largest allowed |achieved - target| share")
    seed: int = 0
    total_tokens: int = Field(default=0, description="token budget of the mix; 0: the stage's packed tokens")

    def category_shares(self) -> dict[str, float]:
        return {c: getattr(self, c) for c in CATEGORIES}

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
        dg.AssetCheckSpec("shares_within_tolerance", asset=MIXTURE_KEY, blocking=True,
                          description="achieved token shares within the configured tolerance of the targets "
                          "(blocks only an unexplained miss: a WARN, what the data cannot reach, does not)"),
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
    write_parquet(mix.table, out / "mixture.parquet")

    written = pq.read_table(out / "mixture.parquet")
    check = check_shares(written, mix.plan, config.tolerance, max_sequence_tokens(sequences))
    status_col = assignments.column("status").to_pylist()
    stage_status = {s: status_col.count(s) for s in ("packed", "deferred", "rejected")}
    reasons: dict[str, int] = {}
    for r in assignments.column("reason").to_pylist():
        if r is not None:
            reasons[r] = reasons.get(r, 0) + 1
    png = fill_png(written, capacity, f"ETVLM mixture {stage}")
    write_bytes(out / "fill.png", png)
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
    write_text(out / "data_card.md", data_card_md(**card_args))
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
            check_result(
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


