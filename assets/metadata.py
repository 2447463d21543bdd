"""Small helpers that turn tables and counts into Dagster metadata a person reads in the UI."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import pyarrow as pa


def _cell(value: Any, width: int) -> str:
    text = str(value).replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, width: int = 80) -> str:
    if not rows:
        return "_(no rows)_"
    columns = list(columns or rows[0].keys())
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c, ""), width) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def counts_table(counts: Mapping[str, int], key: str = "reason", value: str = "rows") -> str:
    return markdown_table([{key: k, value: v} for k, v in counts.items()]) if counts else "_(none)_"


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type)) for f in schema])
