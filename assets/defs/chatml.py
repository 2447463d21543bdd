"""chatml/<source> assets: conversations in the contract of DESIGN.md section 4, with checks."""


import dagster as dg

from assets.chatml.normalize import accounting, write_chatml
from assets.contract.chat_template import render_chatml
from assets.contract.cleaning import special_tokens_left
from assets.contract.conversation import CONVERSATION_SCHEMA
from assets.contract.markdown import counts_table, markdown_table
from assets.defs.metadata import DATA_TEAM, column_schema
from assets.defs.resources import DataStore
from assets.defs.sources import raw_key
from assets.sources.registry import SOURCES, SourceSpec

CHATML_GROUP = "chatml"
# Bump when the normalisation's output changes: the data version is hash(code version, raw data
# version), so an unchanged source rerun keeps it and wakes nothing downstream.
CHATML_CODE_VERSION = "1"


def chatml_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["chatml", name])


def build_chatml_asset(spec: SourceSpec) -> dg.AssetsDefinition:
    key = chatml_key(spec.name)

    @dg.asset(
        key=key,
        deps=[raw_key(spec.name)],
        group_name=CHATML_GROUP,
        code_version=CHATML_CODE_VERSION,
        owners=[DATA_TEAM],
        metadata={"dagster/column_schema": column_schema(CONVERSATION_SCHEMA)},
        kinds={"parquet", "polars"},
        tags={"category": spec.category},
        description=(
            f"{spec.name} normalised to ChatML conversations (adapter "
            f"`{spec.adapter.__name__}`); rejected rows kept with their reason."
        ),
        check_specs=[
            dg.AssetCheckSpec("no_sample_lost", asset=key, description="raw rows in = conversations out + rejected"),
            dg.AssetCheckSpec("no_special_tokens", asset=key, description="no special token left in any text part"),
        ],
    )
    def _chatml(context: dg.AssetExecutionContext, store: DataStore) -> dg.MaterializeResult:
        out_dir = store.stage_dir("chatml", spec.name)
        result = write_chatml(spec, store.stage_dir("raw", spec.name), out_dir, log=context.log.info)
        ok, detail = accounting(result)
        leaked = {
            c.sample_id: tokens
            for c in result.conversations
            for m in c.messages
            for p in m["content"]
            if p["type"] == "text" and (tokens := special_tokens_left(p["text"]))
        }
        reasons = result.reasons()
        context.log.info(
            f"{spec.name}: {result.rows_in} rows in, {len(result.conversations)} conversations, "
            f"{len(result.rejections)} rejected {reasons}"
        )
        preview = [
            {"sample_id": c.sample_id, "turns": len(c.messages), "chatml": render_chatml(c.messages)}
            for c in result.conversations[:3]
        ]
        rejected = [r.to_row() for r in result.rejections[:20]]
        table = result.conversation_table()
        summary = (
            f"**{spec.name}** ({spec.category}, `{spec.hub_id}`): {result.rows_in} raw rows -> "
            f"{len(result.conversations)} conversations + {len(result.rejections)} rejected. {detail}."
        )
        return dg.MaterializeResult(
            metadata={
                "rows_in": result.rows_in,
                "conversations": len(result.conversations),
                "rejected": len(result.rejections),
                "dagster/row_count": len(result.conversations),
                "dagster/column_schema": column_schema(CONVERSATION_SCHEMA),
                "images": int(sum(table.column("n_images").to_pylist())),
                "videos": int(sum(table.column("n_videos").to_pylist())),
                "text_chars": int(sum(table.column("n_chars").to_pylist())),
                "path": dg.MetadataValue.path(str(out_dir / "conversations.parquet")),
                "summary": dg.MetadataValue.md(summary),
                "rejects_by_reason": dg.MetadataValue.md(counts_table(reasons)),
                "rejected_rows": dg.MetadataValue.md(
                    markdown_table(rejected, ["sample_id", "reason", "detail", "source_rows"], width=90)
                ),
                "preview": dg.MetadataValue.md(markdown_table(preview, width=300)),
            },
            check_results=[
                dg.AssetCheckResult(check_name="no_sample_lost", passed=ok, metadata={"detail": detail}),
                dg.AssetCheckResult(
                    check_name="no_special_tokens",
                    passed=not leaked,
                    metadata={"samples_with_special_tokens": len(leaked), "examples": str(list(leaked.items())[:3])},
                ),
            ],
        )

    return _chatml


chatml_assets = [build_chatml_asset(spec) for spec in SOURCES]
