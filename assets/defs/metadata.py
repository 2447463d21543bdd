"""Dagster metadata built from the project's tables (the plain markdown lives in assets.contract.markdown)."""

from __future__ import annotations

import dagster as dg
import pyarrow as pa


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type)) for f in schema])
