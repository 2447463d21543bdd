"""Markdown and PNG for the people reading a stage's output: tables, counts, plots inline.

Plain functions (no Dagster), so the data card, the training report and the leaderboard, which
also write their markdown beside the data, share one way of drawing and embedding a picture.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any


class Markdown(str):
    """Text meant to be rendered as markdown where it is shown (a UI, a report), not as a string."""


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


# One size for every plot the project draws, so they read alike in the UI (which shows a
# markdown image at its own size): 1000 x 480 px for one panel, 1200 x 440 px for two side by side.
PLOT_DPI = 100
PLOT_WIDE = (10.0, 4.8)
PLOT_PAIR = (12.0, 4.4)


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display on the hosts that draw plots)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig) -> bytes:
    """A finished figure as PNG bytes at ``PLOT_DPI``; the figure is closed (plots are drawn in
    long runs). The one way the project turns a figure into a picture."""
    plt = pyplot()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=PLOT_DPI)
    plt.close(fig)
    return buf.getvalue()


# Metadata lives in the event log, and every load of an asset page fetches its latest entries: a
# picture of real video frames is megabytes as a full-colour PNG. A picture embedded in metadata
# is kept under this many bytes (the demo's contact sheet: 550 KB -> 70 KB as a 64-colour
# palette at full size); where that costs detail, the full-size file sits beside the data.
MARKDOWN_IMAGE_BYTES = 80_000


def shrink_png(png: bytes, max_bytes: int = MARKDOWN_IMAGE_BYTES) -> bytes:
    """``png`` itself when small enough, else the largest version that fits: a 256/128/64-colour
    palette first (plots and frames keep their look), then smaller sizes. The smallest tried
    when nothing fits."""
    if len(png) <= max_bytes:
        return png
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    best = png
    for scale in (1.0, 0.85, 0.7, 0.55, 0.4):
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        scaled = image if scale == 1.0 else image.resize(size, Image.Resampling.LANCZOS)
        for colors in (256, 128, 64):
            buf = io.BytesIO()
            scaled.quantize(colors=colors).save(buf, format="PNG", optimize=True)
            if len(buf.getvalue()) <= max_bytes:
                return buf.getvalue()
            best = min(best, buf.getvalue(), key=len)
    return best


def png_data_uri(png: bytes) -> str:
    """A PNG as a data URI, so markdown metadata shows it without a file server."""
    return f"data:image/png;base64,{base64.b64encode(png).decode()}"


def png_markdown(png: bytes, title: str) -> str:
    return f"![{title}]({png_data_uri(png)})"


def histogram_md(values: list[int], title: str, xlabel: str) -> str:
    """A PNG histogram embedded as markdown."""
    if not values:
        return "_(no data)_"
    fig, ax = pyplot().subplots(figsize=PLOT_WIDE)
    ax.hist(values, bins=min(20, max(1, len(set(values)))), color="#4a78c2")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    return png_markdown(figure_png(fig), title)
