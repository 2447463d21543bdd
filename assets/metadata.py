"""Small helpers that turn tables and counts into Dagster metadata a person reads in the UI."""

from __future__ import annotations

import base64
import io
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


def histogram_md(values: list[int], title: str, xlabel: str) -> str:
    """A PNG histogram (matplotlib Agg) embedded as a data URI in markdown."""
    if not values:
        return "_(no data)_"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3), dpi=80)
    ax.hist(values, bins=min(20, max(1, len(set(values)))), color="#4a78c2")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return f"![{title}](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})"
