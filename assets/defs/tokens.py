"""token_counts asset: exact length of every ChatML sample (a thin wrapper over ``token_count``)."""


import json
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from assets.contract.atomic import write_parquet
from assets.contract.conversation import REJECTED_SCHEMA
from assets.contract.markdown import counts_table, histogram_md, markdown_table
from assets.contract.progress import Progress
from assets.contract.quality import count_lost, mass_rejections
from assets.defs.chatml import chatml_inputs
from assets.defs.keys import BASE_MODEL_KEY, TOKEN_COUNTS_KEY, VIDEO_FRAMES_KEY, VIDEO_GROUP, chatml_key
from assets.defs.metadata import DATA_TEAM, column_schema
from assets.defs.resources import DataStore, QualityPolicy
from assets.sources.registry import SOURCES
from assets.tokens.count import COUNT_SCHEMA, STAGE, TokenCounter, count_table, video_token_mismatches
from assets.video.frames import sample_videos

# Bump when counting changes (data version = hash(code version, input data versions)).
TOKEN_COUNTS_CODE_VERSION = "1"


def video_plans(video_dir: Path) -> dict[tuple[str, int], object]:
    """(sample_id, video_no) -> grid rows, or (reason, detail) for a rejected video."""
    return {
        key: json.loads(v["grids"]) if v["status"] == "ok" else (v["reason"], v["detail"])
        for key, v in sample_videos(video_dir).items()
    }


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

    def token_counts(context: dg.AssetExecutionContext, store: DataStore, quality: QualityPolicy) -> dg.MaterializeResult:
        return _materialize_token_counts(context, store, quality, list(sources))

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


def _materialize_token_counts(context, store: DataStore, quality: QualityPolicy, sources: list[str]) -> dg.MaterializeResult:
    from training.processor import load_processor

    inputs = chatml_inputs(store, sources, quality, "token_counts")
    processor = load_processor(store.stage_dir("model", "base"))
    counter = TokenCounter(processor, video_plans(store.stage_dir("video_frames")))
    counts, rejected = [], []
    conversations = 0
    per_source: dict[str, int] = {}
    progress = Progress(STAGE, sum(pq.read_metadata(p).num_rows for p in inputs.paths.values()), context.log.info, unit="samples")
    for name, path in inputs.paths.items():
        rows = pq.read_table(path).to_pylist()
        conversations += len(rows)
        per_source[name] = len(rows)
        c, r = count_table(rows, counter, progress)
        counts += c
        rejected += r
    progress.close()
    video_dir = store.stage_dir("video_frames")
    frame_tables = [video_dir / "samples.parquet", video_dir / "videos.parquet"]
    if all(p.is_file() for p in frame_tables):
        samples, videos = (pq.read_table(p).to_pylist() for p in frame_tables)
    else:
        samples, videos = [], []
    mismatched = video_token_mismatches(counts, samples, videos)
    out = store.stage_dir(STAGE)
    write_parquet(pa.Table.from_pylist(counts, schema=COUNT_SCHEMA), out / "token_counts.parquet")
    write_parquet(pa.Table.from_pylist(rejected, schema=REJECTED_SCHEMA), out / "rejected.parquet")
    mass = mass_rejections(count_lost(rejected, raw_rows=False), per_source, quality.max_reason_share)
    if inputs.excluded:
        context.log.warning(f"token_counts leaves out {inputs.excluded_md()} (quality.exclude_sources)")
    reasons: dict[str, int] = {}
    for r in rejected:
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    by_source: dict[str, dict] = {}
    for c in counts:
        s = by_source.setdefault(c["source"], {"source": c["source"], "samples": 0, "tokens": 0, "max": 0})
        s["samples"] += 1
        s["tokens"] += c["n_tokens"]
        s["max"] = max(s["max"], c["n_tokens"])
    context.log.info(f"{len(counts)} samples counted, {len(rejected)} rejected {reasons}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(counts),
            "dagster/column_schema": column_schema(COUNT_SCHEMA),
            "rejected": len(rejected),
            "total_tokens": sum(c["n_tokens"] for c in counts),
            "video_tokens": sum(c["n_video_tokens"] for c in counts),
            "image_tokens": sum(c["n_image_tokens"] for c in counts),
            "by_source": dg.MetadataValue.md(markdown_table(list(by_source.values()))),
            "rejects_by_reason": dg.MetadataValue.md(counts_table(dict(sorted(reasons.items())))),
            "rejected_rows": dg.MetadataValue.md(markdown_table(rejected[:20], ["sample_id", "source", "reason", "detail"], width=90)),
            "tokens_per_sample": dg.MetadataValue.md(histogram_md([c["n_tokens"] for c in counts], "tokens per sample", "tokens")),
            "path": dg.MetadataValue.path(str(out / "token_counts.parquet")),
            "sources": ", ".join(inputs.paths),
            "excluded_sources": inputs.excluded_md(),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="video_tokens_match_frames", passed=not mismatched,
                metadata={"samples_with_video": sum(1 for c in counts if c["n_videos"]), "mismatched": len(mismatched),
                          "first_mismatches": dg.MetadataValue.md(markdown_table(mismatched[:10]) if mismatched else "_(none)_")},
            ),
            dg.AssetCheckResult(
                check_name="no_sample_lost", passed=conversations == len(counts) + len(rejected),
                metadata={"conversations": conversations, "counted": len(counts), "rejected": len(rejected),
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
