"""raw/<source> assets: one per registry entry, fetched through ``datasets``."""


import dagster as dg
import pyarrow.parquet as pq

from assets.contract.markdown import markdown_table
from assets.defs.metadata import DATA_TEAM, column_schema
from assets.defs.resources import DataStore, SourceHub
from assets.sources.hub import fetch_source
from assets.sources.registry import SOURCES, SourceSpec

RAW_GROUP = "raw_sources"
# Bump when fetching changes what lands on disk. The data version itself is the content hash
# (so the nightly refresh of unchanged content wakes nothing downstream).
RAW_CODE_VERSION = "1"
DOWNLOAD_RETRY = dg.RetryPolicy(max_retries=3, delay=15, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def raw_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["raw", name])


def build_raw_asset(spec: SourceSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=raw_key(spec.name),
        group_name=RAW_GROUP,
        code_version=RAW_CODE_VERSION,
        owners=[DATA_TEAM],
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
        if settings.mode == "hub":  # a download can take a while: say what it waits for
            context.log.info(f"fetching {spec.name} from {spec.hub_id}")
        fetched = fetch_source(spec, settings, store.stage_dir("raw", spec.name), store.embedded_root)
        context.log.info(f"{spec.name}: {fetched.rows} rows from {spec.hub_id} ({fetched.mode}), "
                         f"{len(fetched.media_roots)} media root(s)")
        preview = pq.read_table(fetched.data_path).slice(0, 3).to_pylist()
        schema = pq.read_schema(fetched.data_path)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": fetched.rows,
                "dagster/column_schema": column_schema(schema, {n: spec.column_description(n) for n in schema.names}),
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
