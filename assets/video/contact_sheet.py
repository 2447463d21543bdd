"""A contact sheet of the video_frames stage: a few sampled frames of some videos, one row each.

The tables say how many frames were sampled and at what size; a picture shows whether they are
the right frames (not black, not all the same, hybrid low-resolution frames where expected).
Frames come from the stored shards, so the sheet shows exactly what training reads.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from assets.contract.markdown import figure_png, pyplot

HYBRID_COLOUR = "#d0312d"


def choose_videos(videos: Sequence[Mapping[str, Any]], sources: Mapping[str, str], limit: int = 6) -> list[Mapping[str, Any]]:
    """Up to ``limit`` sampled videos: the hybrid ones first (up to half), then one per source,
    then the rest in order, so every source and both kinds of plan show."""
    ok = [v for v in videos if v["status"] == "ok" and v.get("frames_file")]
    chosen: list[Mapping[str, Any]] = [v for v in ok if v.get("hybrid")][: max(1, limit // 2)]
    seen = {sources.get(v["video_key"]) for v in chosen}
    for v in ok:
        if len(chosen) >= limit:
            break
        if v not in chosen and sources.get(v["video_key"]) not in seen:
            chosen.append(v)
            seen.add(sources.get(v["video_key"]))
    for v in ok:
        if len(chosen) >= limit:
            break
        if v not in chosen:
            chosen.append(v)
    return chosen


def sampled_frames(shard: str | Path, per_video: int) -> list[tuple[float, int, np.ndarray]]:
    """(timestamp, grid row, RGB array) of ``per_video`` frames spread over the shard's plan."""
    from PIL import Image

    table = pq.read_table(shard, columns=["frame", "timestamp", "grid_row", "png"])
    n = table.num_rows
    if n == 0:
        return []
    picks = sorted({int(round(i)) for i in np.linspace(0, n - 1, min(per_video, n))})
    rows = table.take(picks).to_pylist()
    return [
        (r["timestamp"], r["grid_row"], np.asarray(Image.open(io.BytesIO(r["png"])).convert("RGB"))) for r in rows
    ]


def contact_sheet_png(
    videos: Sequence[Mapping[str, Any]], sources: Mapping[str, str], per_video: int = 5, limit: int = 6
) -> bytes | None:
    """The sheet as PNG bytes (None when no video was sampled). Each row: the file, its source,
    duration and frames; a hybrid row is framed and labelled in red with its (L, m, s)."""
    chosen = choose_videos(videos, sources, limit)
    if not chosen:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(len(chosen), per_video, figsize=(12.0, 1.7 * len(chosen) + 0.6), squeeze=False)
    for row, video in enumerate(chosen):
        frames = sampled_frames(video["frames_file"], per_video)
        hybrid = json.loads(video["hybrid"]) if video.get("hybrid") else None
        colour = HYBRID_COLOUR if hybrid else "black"
        for col in range(per_video):
            ax = axes[row][col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(frames):
                ax.axis("off")
                continue
            timestamp, grid_row, image = frames[col]
            ax.imshow(image)
            ax.set_title(f"t={timestamp:.1f}s" + (f" row {grid_row}" if hybrid else ""), fontsize=8, color=colour)
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(2.5 if hybrid else 0.5)
        name = Path(video["path"]).name
        label = (
            f"{name[:28]}\n{sources.get(video['video_key'], '?')}, {video['duration']:.0f} s\n"
            f"{video['n_frames']} frames" + (f"\nHYBRID {tuple(hybrid)}" if hybrid else "")
        )
        axes[row][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8, color=colour, labelpad=8)
    fig.suptitle(f"video_frames: {per_video} sampled frames of {len(chosen)} of {len(videos)} videos "
                 "(red: hybrid resolution)")
    return figure_png(fig)
