"""token_counts asset: exact length of every ChatML sample (a thin wrapper over ``token_count``)."""


from pathlib import Path

import dagster as dg

from assets.contract.markdown import counts_table, histogram_md, markdown_table
from assets.contract.quality import mass_rejections
from assets.defs.chatml import ChatmlInputs, chatml_inputs
from assets.defs.keys import BASE_MODEL_KEY, TOKEN_COUNTS_KEY, VIDEO_FRAMES_KEY, VIDEO_GROUP, chatml_key
from assets.defs.metadata import DATA_TEAM, column_schema
from assets.defs.resources import DataPlaneConfig, DataStore, QualityPolicy
from assets.sources.registry import SOURCES
from assets.tokens.count import COUNT_SCHEMA, STAGE
from assets.tokens.stage import TokenSummary, run_token_counts, video_plans  # noqa: F401 - video_plans: tests import it here

# Bump when counting changes (data version = hash(code version, input data versions)).
TOKEN_COUNTS_CODE_VERSION = "1"


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
        group_name=VIDEO_GROUP,
        code_version=TOKEN_COUNTS_CODE_VERSION,
        owners=[DATA_TEAM],
        metadata={"dagster/column_schema": column_schema(COUNT_SCHEMA)},
        kinds={"parquet", "transformers"},
        description="Exact token length of every ChatML sample with the base model's processor and chat "
        "template: text + image tokens from image grids + video tokens from the frame plans.",
        check_specs=TOKEN_COUNTS_CHECKS,
    )(token_counts)


def _materialize_token_counts(context, store: DataStore, quality: QualityPolicy, sources: list[str],
                              config: DataPlaneConfig) -> dg.MaterializeResult:
    from training.processor import load_processor

    inputs = chatml_inputs(store, sources, quality, "token_counts")
    processor = load_processor(store.stage_dir("model", "base"))
    out = store.stage_dir(STAGE)
    result = run_token_counts(inputs.paths, processor, store.stage_dir("video_frames"), out,
                              workers=config.workers, batch_size=config.batch_size, log=context.log.info)
    return token_counts_result(context, result, inputs, out, quality)


def token_counts_result(context, result: TokenSummary, inputs: ChatmlInputs, out: Path,
                        quality: QualityPolicy) -> dg.MaterializeResult:
    """The token_counts asset's checks and metadata from a run's summary."""
    mass = mass_rejections(result.lost, result.per_source, quality.max_reason_share)
    if inputs.excluded:
        context.log.warning(f"token_counts leaves out {inputs.excluded_md()} (quality.exclude_sources)")
    reasons = dict(sorted(result.reasons.items()))
    context.log.info(f"{result.counted} samples counted, {result.rejected} rejected {reasons} ({result.workers} worker(s))")
    mismatched = result.mismatched
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": result.counted,
            "dagster/column_schema": column_schema(COUNT_SCHEMA),
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
