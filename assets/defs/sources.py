"""raw/<source> assets: one per registry entry, fetched through ``datasets``."""


import dagster as dg
import pyarrow.parquet as pq

from assets.contract.markdown import markdown_table
from assets.defs.keys import RAW_GROUP, raw_key
from assets.defs.resources import DataStore, SourceHub
from assets.sources.hub import fetch_source
from assets.sources.registry import SOURCES, SourceSpec

DOWNLOAD_RETRY = dg.RetryPolicy(max_retries=3, delay=15, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def build_raw_asset(spec: SourceSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=raw_key(spec.name),
        group_name=RAW_GROUP,
        kinds={"huggingface", "parquet"},
        tags={"category": spec.category},
        description=(
            f"{spec.task} ({spec.category}) from `{spec.hub_id}`, files {list(spec.data_files)}, "
            "in its published schema. Embedded default: a generated local sample in the same layout."
        ),
        metadata={"hub_id": spec.hub_id, "license": spec.license, "notes": spec.notes},
        retry_policy=DOWNLOAD_RETRY,
    )
    def _raw(context: dg.AssetExecutionContext, store: DataStore, hub: SourceHub) -> dg.MaterializeResult:
        settings = hub.settings()
        context.log.info(f"fetching {spec.name} ({settings.mode}) from {spec.hub_id}")
        fetched = fetch_source(spec, settings, store.stage_dir("raw", spec.name), store.embedded_root)
        context.log.info(f"{spec.name}: {fetched.rows} rows, {len(fetched.media_roots)} media root(s)")
        preview = pq.read_table(fetched.data_path).slice(0, 3).to_pylist()
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": fetched.rows,
                "mode": fetched.mode,
                "location": fetched.location,
                "path": dg.MetadataValue.path(str(fetched.data_path)),
                "columns": ", ".join(fetched.columns),
                "media_roots": "\n".join(str(p) for p in fetched.media_roots) or "(inline or none)",
                "content_hash": fetched.content_hash,
                "preview": dg.MetadataValue.md(markdown_table(preview, width=60)),
            },
            data_version=dg.DataVersion(fetched.content_hash),
        )

    return _raw


raw_assets = [build_raw_asset(spec) for spec in SOURCES]
