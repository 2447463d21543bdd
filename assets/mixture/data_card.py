"""The data card of a stage's mixture: a markdown table and a PNG of fill and lengths.

Written next to the mixture (``data_card.md``, ``fill.png``) and shown as asset metadata, so
a person sees what a stage trains on (shares against targets, how full the sequences are,
what was left out and why) without opening a parquet file.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assets.contract.markdown import PLOT_PAIR, counts_table, figure_png, markdown_table, pyplot
from assets.packing.stage import stratum_order


def fill_png(mixture: pa.Table, capacity: int, title: str) -> bytes:
    """Two histograms: sequence fill (tokens / capacity) and sample lengths by category."""
    fig, (ax1, ax2) = pyplot().subplots(1, 2, figsize=PLOT_PAIR)
    fill = mixture.column("n_tokens").to_numpy(zero_copy_only=False) / capacity
    ax1.hist(fill, bins=np.linspace(0, 1, 21), color="#4a78c2")
    ax1.set_title("sequence fill")
    ax1.set_xlabel("tokens / capacity")
    ax1.set_ylabel("sequences")
    lengths = pc.list_flatten(mixture.column("lengths")).to_numpy(zero_copy_only=False)
    per_seq = pc.list_value_length(mixture.column("lengths")).to_numpy(zero_copy_only=False)
    cats = np.repeat(np.array(mixture.column("category").to_pylist(), dtype=object), per_seq)
    if lengths.size:
        edges = np.geomspace(max(1, lengths.min()), max(2, lengths.max()) * 1.01, 21)
        names = [c for c, _ in stratum_order((c, False) for c in set(cats.tolist()))]
        ax2.hist([lengths[cats == c] for c in names], bins=edges, stacked=True, label=names)
        ax2.set_xscale("log")
        ax2.legend(fontsize=9)
    ax2.set_title("sample lengths (with repeats)")
    ax2.set_xlabel("tokens")
    ax2.set_ylabel("samples")
    fig.suptitle(title)
    return figure_png(fig)


def data_card_md(
    *,
    stage: str,
    capacity: int,
    mode: str,
    mixture: pa.Table,
    share_rows: list[dict],
    stratum_rows: list[dict],
    stage_status: Mapping[str, int],
    reasons: Mapping[str, int],
    notes: list[str],
    budget: int,
    image: str = "fill.png",
) -> str:
    """Markdown card; ``image`` is the PNG's link (a file name, or a data URI for the UI)."""
    tokens = int(pc.sum(mixture.column("n_tokens")).as_py() or 0)
    n = mixture.num_rows
    ids = pc.list_flatten(mixture.column("sample_ids"))
    summary = [
        {"what": "sequences", "value": f"{n} ({len(set(mixture.column('seq_id').to_pylist()))} distinct, max copy {max(mixture.column('copy').to_pylist(), default=0)})"},
        {"what": "samples", "value": f"{len(ids)} uses of {len(set(ids.to_pylist()))} distinct samples"},
        {"what": "tokens", "value": f"{tokens:,} (budget {budget:,})"},
        {"what": "fill", "value": f"{tokens / (n * capacity):.4f}" if n else "n/a"},
    ]
    by_cat: dict[str, dict] = {}
    per_seq = pc.list_value_length(mixture.column("sample_ids")).to_pylist()
    for c, k, t in zip(mixture.column("category").to_pylist(), per_seq, mixture.column("n_tokens").to_pylist()):
        d = by_cat.setdefault(c, {"category": c, "sequences": 0, "samples": 0, "tokens": 0})
        d["sequences"] += 1
        d["samples"] += k
        d["tokens"] += t
    lines = [
        f"# ETVLM mixture, stage {stage}",
        "",
        f"Capacity {capacity:,} tokens, attention mode `{mode}`.",
        "",
        markdown_table(summary),
        "",
        "## Shares by tokens",
        "",
        markdown_table(share_rows),
        "",
        "## Categories",
        "",
        markdown_table([by_cat[c] for c, _ in stratum_order((c, False) for c in by_cat)]),
        "",
        "## Strata (category x long)",
        "",
        markdown_table(stratum_rows),
        "",
        f"## Samples at stage {stage} (from packed)",
        "",
        counts_table(dict(stage_status), key="status", value="samples"),
        "",
        "Rejects and deferrals by reason:",
        "",
        counts_table(dict(reasons)),
        "",
    ]
    if notes:
        lines += ["## Notes", "", *[f"- {x}" for x in notes], ""]
    lines += [f"![sequence fill and sample lengths]({image})", ""]
    return "\n".join(lines)
