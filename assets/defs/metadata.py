"""Dagster metadata built from the project's tables (the plain markdown lives in assets.contract.markdown)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
import pyarrow as pa

from assets.contract.markdown import Markdown


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type)) for f in schema])


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
