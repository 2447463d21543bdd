"""raw/<source> assets: one per source (registry entry or declared dataset), fetched through ``datasets``."""


import dagster as dg
import pyarrow.parquet as pq

from assets.contract.markdown import markdown_table
from assets.defs.keys import RAW_GROUP, raw_key
from assets.defs.metadata import DATA_TEAM, column_schema
from assets.defs.resources import DataStore, SourceHub
from assets.sources.errors import is_transient
from assets.sources.hub import fetch_source
from assets.sources.registry import SOURCES, SourceSpec

# Bump when fetching changes what lands on disk. The data version itself is the content hash
# (so the nightly refresh of unchanged content wakes nothing downstream).
RAW_CODE_VERSION = "1"
# Only transient failures (network, 5xx, timeouts) reach this policy: everything else is
# raised as a non-retryable ``dg.Failure`` by ``fetch_failure``.
DOWNLOAD_RETRY = dg.RetryPolicy(max_retries=3, delay=15, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def fetch_failure(name: str, exc: Exception) -> Exception:
    """What the raw asset raises for ``exc``: the error itself when a retry can help (the
    retry policy then applies), else a ``dg.Failure`` that is not retried."""
    if is_transient(exc):
        return exc
    return dg.Failure(
        description=f"raw/{name}: {type(exc).__name__}: {exc}\n(not retried: this error does not go away by itself)",
        allow_retries=False,
    )


def build_raw_asset(spec: SourceSpec) -> dg.AssetsDefinition:
    where = spec.files_root or spec.hub_id

    @dg.asset(
        key=raw_key(spec.name),
        group_name=RAW_GROUP,
        code_version=RAW_CODE_VERSION,
        owners=[DATA_TEAM],
        kinds={"huggingface", "parquet"},
        tags={"category": spec.category, "origin": spec.origin},
        description=(
            f"{spec.task} ({spec.category}) from `{where}`, files {list(spec.data_files)}, "
            "in its published schema. Embedded default: a generated local sample in the same layout."
            if spec.origin == "registry"
            else f"Declared dataset ({spec.category}) from `{where}`, files {list(spec.data_files)}; "
            "the folder is a read-only input."
        ),
        metadata={"hub_id": spec.hub_id, "license": spec.license, "notes": spec.notes, "origin": spec.origin},
        retry_policy=DOWNLOAD_RETRY,
    )
    def _raw(context: dg.AssetExecutionContext, store: DataStore, hub: SourceHub) -> dg.MaterializeResult:
        settings = hub.settings()
        if settings.mode == "hub":  # a download can take a while: say what it waits for
            context.log.info(f"fetching {spec.name} from {where}")
        try:
            fetched = fetch_source(spec, settings, store.stage_dir("raw", spec.name), store.embedded_root)
        except Exception as exc:
            raise fetch_failure(spec.name, exc) from exc
        if fetched.fallback:
            context.log.warning(
                f"{spec.name}: datasets could not read the files ({fetched.fallback}); read record by record, "
                f"{fetched.undecodable} undecodable record(s) quarantined"
            )
        context.log.info(f"{spec.name}: {fetched.rows} rows from {where} ({fetched.mode}), "
                         f"{len(fetched.media_roots)} media root(s)")
        preview = pq.read_table(fetched.data_path).slice(0, 3).to_pylist()
        bad = pq.read_table(fetched.data_path.with_name("undecodable.parquet")).slice(0, 20).to_pylist()
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
                "undecodable": fetched.undecodable,
                "reader": "record by record (datasets failed)" if fetched.fallback else "datasets",
                "undecodable_records": dg.MetadataValue.md(
                    markdown_table(bad, ["reason", "detail"], width=120) if bad else "_(none)_"
                ),
                "preview": dg.MetadataValue.md(markdown_table(preview, width=60)),
            },
            data_version=dg.DataVersion(fetched.content_hash),
        )

    return _raw


def build_raw_assets(specs: list[SourceSpec] | tuple[SourceSpec, ...]) -> list[dg.AssetsDefinition]:
    return [build_raw_asset(spec) for spec in specs]


raw_assets = build_raw_assets(SOURCES)
