"""benchmark/<name> assets: each benchmark in its published format (hub or embedded sample),
normalised to ``items.parquet`` + ``rejected.parquet``; one asset per module of eval/benchmarks.

A benchmark's config is the common one plus the fields of its own options model (Visual
Haystack's image counts, for instance), so the UI offers each benchmark what it reads.
"""

from typing import Optional

import dagster as dg
import pydantic

from assets.contract.markdown import counts_table, markdown_table
from assets.defs.keys import BENCHMARK_GROUP, benchmark_key
from assets.defs.metadata import EVAL_TEAM, column_schema
from assets.defs.resources import DataStore, SourceHub
from eval.benchmarks import BENCHMARKS, Benchmark
from eval.fetch import fetch_benchmark
from eval.formats import FetchOptions
from eval.items import ITEM_SCHEMA

# Bump when normalisation changes what items.parquet holds for the same published rows.
BENCHMARK_CODE_VERSION = "1"


class BenchmarkConfig(dg.Config):
    max_items_per_split: Optional[int] = None
    """Cap per split (VideoMME duration, MME category, ...); MME image pairs stay whole."""
    seed: int = 0


def config_class(bench: Benchmark) -> type[BenchmarkConfig]:
    """BenchmarkConfig plus the fields of the benchmark's own options model."""
    if bench.options is None:
        return BenchmarkConfig
    fields = {name: (f.annotation, f) for name, f in bench.options.model_fields.items()}
    title = "".join(part.title() for part in bench.name.split("_"))
    return pydantic.create_model(f"{title}Config", __base__=BenchmarkConfig, **fields)


def _benchmark_asset(bench: Benchmark) -> dg.AssetsDefinition:
    config_cls = config_class(bench)

    @dg.asset(
        key=benchmark_key(bench.name),
        group_name=BENCHMARK_GROUP,
        code_version=BENCHMARK_CODE_VERSION,
        owners=[EVAL_TEAM],
        metadata={"dagster/column_schema": column_schema(ITEM_SCHEMA)},
        kinds={"parquet", "huggingface"},
        description=f"{bench.title} ({bench.hub_id}) in its published format, normalised to items.parquet "
        f"(prompt as lmms-eval builds it, media as local paths) + rejected.parquet. {bench.paper}.",
    )
    def _asset(context: dg.AssetExecutionContext, config: config_cls, store: DataStore, hub: SourceHub) -> dg.MaterializeResult:
        extra = {}
        if bench.options is not None:
            chosen = bench.options(**{name: getattr(config, name) for name in bench.options.model_fields})
            extra = chosen.fetch_options(hub.mode)
        options = FetchOptions(max_items_per_split=config.max_items_per_split, seed=config.seed, **extra)
        out = store.stage_dir("benchmarks", bench.name)
        fetched = fetch_benchmark(bench, hub.settings(), out, store.embedded_root, options)
        context.log.info(f"{bench.name}: {len(fetched.items)} items from {fetched.rows_in} rows ({fetched.mode}: {fetched.location})")
        preview = [
            {
                "item_id": i.item_id,
                bench.split_label: i.split,
                "answer": i.answer,
                "media": i.video or f"{i.n_images} image(s)",
                "prompt": i.prompt.replace("\n", " / "),
            }
            for i in fetched.items[:6]
        ]
        return dg.MaterializeResult(
            metadata={
                "mode": fetched.mode,
                "hub_id": bench.hub_id,
                "location": fetched.location,
                "rows_in": fetched.rows_in,
                "items": len(fetched.items),
                "rejected": len(fetched.rejected),
                "dagster/row_count": len(fetched.items),
                "dagster/column_schema": column_schema(ITEM_SCHEMA),
                f"items_by_{bench.split_label}": dg.MetadataValue.md(counts_table(fetched.by_split(), bench.split_label, "items")),
                "rejected_by_reason": dg.MetadataValue.md(counts_table(fetched.reasons())),
                "preview": dg.MetadataValue.md(markdown_table(preview, width=120)),
                "items_path": dg.MetadataValue.path(str(fetched.items_path)),
            }
        )

    _asset.__name__ = f"benchmark_{bench.name}"
    return _asset


benchmark_assets = [_benchmark_asset(bench) for bench in BENCHMARKS]
