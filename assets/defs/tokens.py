"""token_counts asset: exact length of every ChatML sample (a thin wrapper over ``token_count``)."""


import json
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from assets.contract.layout import DataLayout
from assets.contract.markdown import counts_table, histogram_md, markdown_table
from assets.contract.quality import mass_rejections
from assets.defs.chatml import ChatmlInputs, chatml_inputs
from assets.defs.keys import BASE_MODEL_KEY, TOKEN_COUNTS_KEY, VIDEO_FRAMES_KEY, VIDEO_GROUP, chatml_key
from assets.defs.metadata import DATA_TEAM, column_schema
from assets.defs.partitions import SHARD_KEYS, shard_of_run, shard_partitions
from assets.defs.resources import DataPlaneConfig, DataStore, QualityPolicy
from assets.sources.registry import SOURCES
from assets.tokens.count import COUNT_SCHEMA
from assets.tokens.stage import TokenSummary, run_token_counts, video_plans  # noqa: F401 - video_plans: tests import it here

# Bump when counting changes (data version = hash(code version, input data versions)).
TOKEN_COUNTS_CODE_VERSION = "2"  # 2: one partition per shard, source_row kept for the merged order
# Schema metadata of every part: the asset's source order (with source_row it restores the
# unsharded order of the merged table, so packing does not depend on the shard count).
SOURCES_META = b"giraffe_sources"


TOKEN_COUNTS_CHECKS = [
    dg.AssetCheckSpec("video_tokens_match_frames", asset=TOKEN_COUNTS_KEY, blocking=True,
                      description="every sample's video tokens = sum of its videos' visual_tokens in "
                      "video_frames/videos.parquet (the video_frames -> token_counts edge)"),
    dg.AssetCheckSpec("no_sample_lost", asset=TOKEN_COUNTS_KEY, blocking=True,
                      description="ChatML conversations in = samples counted + samples rejected"),
    dg.AssetCheckSpec("no_mass_rejection", asset=TOKEN_COUNTS_KEY, blocking=True,
                      description="no single reason takes more than quality.max_reason_share of a source's samples"),
]


def build_token_counts(sources: list[str]) -> dg.AssetsDefinition:
    """The token_counts asset over the ChatML of ``sources`` (registry and declared)."""

    def token_counts(context: dg.AssetExecutionContext, store: DataStore, quality: QualityPolicy,
                     config: DataPlaneConfig) -> dg.MaterializeResult:
        return _materialize_token_counts(context, store, quality, list(sources), config)

    return dg.asset(
        key=TOKEN_COUNTS_KEY,
        deps=[BASE_MODEL_KEY, VIDEO_FRAMES_KEY, *[chatml_key(s) for s in sources]],
        partitions_def=shard_partitions,
        group_name=VIDEO_GROUP,
        code_version=TOKEN_COUNTS_CODE_VERSION,
        owners=[DATA_TEAM],
        metadata={"dagster/column_schema": column_schema(COUNT_SCHEMA)},
        kinds={"parquet", "transformers"},
        description="Exact token length of every ChatML sample with the base model's processor and chat "
        "template: text + image tokens from image grids + video tokens from the frame plans. One partition per "
        "shard of sample ids; packing reads every shard (`read_token_counts`).",
        check_specs=TOKEN_COUNTS_CHECKS,
    )(token_counts)


def _materialize_token_counts(context, store: DataStore, quality: QualityPolicy, sources: list[str],
                              config: DataPlaneConfig) -> dg.MaterializeResult:
    from assets.tokens.counter_cache import counting_processor
    from training.processor import load_processor

    shard = shard_of_run(context)
    inputs = chatml_inputs(store, sources, quality, "token_counts", shard.key)
    model_dir = store.stage_dir("model", "base")
    processor = counting_processor(model_dir, store.layout.counting_rules, lambda: load_processor(model_dir))
    out = store.layout.token_counts_shard(shard.key)
    result = run_token_counts(inputs.paths, processor, store.layout.video_frames_shard(shard.key), out,
                              workers=config.workers, batch_size=config.batch_size, log=context.log.info,
                              schema_metadata={SOURCES_META: json.dumps(sources).encode()})
    return token_counts_result(context, result, inputs, out, quality, shard.key)


def token_counts_result(context, result: TokenSummary, inputs: ChatmlInputs, out: Path,
                        quality: QualityPolicy, shard: str | None = None) -> dg.MaterializeResult:
    """The token_counts asset's checks and metadata from a run's summary."""
    mass = mass_rejections(result.lost, result.per_source, quality.max_reason_share, quality.min_records)
    if inputs.excluded:
        context.log.warning(f"token_counts leaves out {inputs.excluded_md()} (quality.exclude_sources)")
    reasons = dict(sorted(result.reasons.items()))
    context.log.info((f"shard {shard}: " if shard else "") + f"{result.counted} samples counted, {result.rejected} rejected {reasons} ({result.workers} worker(s))")
    mismatched = result.mismatched
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": result.counted,
            "dagster/column_schema": column_schema(COUNT_SCHEMA),
            "shard": shard or "",
            "rejected": result.rejected,
            "total_tokens": result.total_tokens,
            "video_tokens": result.video_tokens,
            "image_tokens": result.image_tokens,
            "workers": result.workers,
            "by_source": dg.MetadataValue.md(markdown_table(list(result.by_source.values()))),
            "rejects_by_reason": dg.MetadataValue.md(counts_table(reasons)),
            "rejected_rows": dg.MetadataValue.md(markdown_table(result.rejected_preview, ["sample_id", "source", "reason", "detail"], width=90)),
            "tokens_per_sample": dg.MetadataValue.md(histogram_md(result.n_tokens(), "tokens per sample", "tokens")),
            "path": dg.MetadataValue.path(str(out / "token_counts.parquet")),
            "sources": ", ".join(inputs.paths),
            "excluded_sources": inputs.excluded_md(),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="video_tokens_match_frames", passed=not mismatched,
                metadata={"samples_with_video": result.samples_with_video, "mismatched": len(mismatched),
                          "first_mismatches": dg.MetadataValue.md(markdown_table(mismatched[:10]) if mismatched else "_(none)_")},
            ),
            dg.AssetCheckResult(
                check_name="no_sample_lost", passed=result.conversations == result.counted + result.rejected,
                metadata={"conversations": result.conversations, "counted": result.counted, "rejected": result.rejected,
                          "excluded_sources": inputs.excluded_md()},
            ),
            dg.AssetCheckResult(
                check_name="no_mass_rejection", passed=not mass,
                metadata={"max_reason_share": quality.max_reason_share,
                          "worst": mass[0].describe() if mass else "(none over the limit)",
                          "reason": mass[0].reason if mass else ""},
            ),
        ],
    )


token_counts = build_token_counts([s.name for s in SOURCES])


def read_token_counts(layout: DataLayout, columns: list[str] | None = None) -> pa.Table:
    """Every shard's token counts as one table, in the unsharded order (the asset's source
    order, then each source's raw row order), so what is packed does not depend on
    ``GIRAFFE_SHARDS``. A missing shard is an error naming it: packing needs all of them. An
    unsharded ``token_counts.parquet`` (written by hand or by older code) is read as it is."""
    sharded = [layout.token_counts_shard(k) / "token_counts.parquet" for k in SHARD_KEYS]
    if any(p.is_file() for p in sharded):
        missing = [str(p) for p in sharded if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"token_counts shard(s) not materialised: {', '.join(missing)}")
        parts = sharded
    elif layout.token_counts_file.is_file():
        parts = [layout.token_counts_file]
    else:
        raise FileNotFoundError(f"no token counts under {layout.token_counts}: materialise token_counts")
    wanted = None if columns is None else list(dict.fromkeys([*columns, "source", "source_row"]))
    tables = []
    for path in parts:
        names = pq.read_schema(path).names
        tables.append(pq.read_table(path, columns=None if wanted is None else [c for c in wanted if c in names]))
    table = pa.concat_tables(tables)
    meta = pq.read_schema(parts[0]).metadata or {}
    if "source_row" in table.column_names and SOURCES_META in meta:
        rank = {s: i for i, s in enumerate(json.loads(meta[SOURCES_META]))}
        keys = pa.table({
            "rank": pa.array([rank.get(s, len(rank)) for s in table.column("source").to_pylist()], pa.int64()),
            "source": table.column("source"),
            "row": table.column("source_row"),
        })
        table = table.take(pc.sort_indices(keys, [("rank", "ascending"), ("source", "ascending"), ("row", "ascending")]))
    return table if columns is None else table.select(columns)
