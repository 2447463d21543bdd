"""Dagster metadata built from the project's tables and plain values (the plain markdown lives
in assets.contract.markdown, column descriptions beside each schema in assets.contract.schema)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
import pyarrow as pa

from assets.contract.markdown import Markdown
from assets.contract.schema import description, type_name

# Who to ask about an asset: the Dagster UI shows owners on every asset page and lets a user
# filter the catalog by them. One team per part of the pipeline (group -> owner).
DATA_TEAM = "team:giraffe-data"
TRAINING_TEAM = "team:giraffe-training"
EVAL_TEAM = "team:giraffe-eval"


def column_schema(schema: pa.Schema, fallback: Mapping[str, str] | None = None) -> dg.TableSchema:
    """The schema as Dagster shows it: name, short type, nullability and each column's
    description (from the field's metadata, ``assets.contract.schema.described``; ``fallback``
    for a published schema we do not own, such as a raw source's)."""
    fallback = fallback or {}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                f.name,
                type_name(f.type),
                description=description(f) or fallback.get(f.name),
                constraints=dg.TableColumnConstraints(nullable=f.nullable),
            )
            for f in schema
        ]
    )


def schema_metadata(schema: pa.Schema, fallback: Mapping[str, str] | None = None) -> dg.TableSchemaMetadataValue:
    """The schema of a stage's second table (``dagster/column_schema`` describes the asset's rows)."""
    return dg.MetadataValue.table_schema(column_schema(schema, fallback))


def check_result(name: str, asset: dg.AssetKey, passed: bool, problems: list[str], severity: str = "ERROR", **md) -> dg.AssetCheckResult:
    meta = {k: v for k, v in md.items() if not isinstance(v, list | dict)}
    if problems:
        meta["problems"] = dg.MetadataValue.md("\n".join(f"- {p}" for p in problems[:20]))
    return dg.AssetCheckResult(
        check_name=name, asset_key=asset, passed=passed, severity=dg.AssetCheckSeverity(severity), metadata=meta
    )


def as_metadata(values: Mapping[str, Any]) -> dict[str, Any]:
    """Plain values from the stage code as Dagster metadata (``Markdown`` text shown as markdown)."""
    return {k: dg.MetadataValue.md(v) if isinstance(v, Markdown) else v for k, v in values.items()}
