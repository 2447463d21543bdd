"""Exact token counts of ChatML samples with the target model's processor and chat template.

A sample's length is what the processor would produce: the rendered ChatML (checked equal to
the model's template elsewhere) tokenised, with each image placeholder grown to the image's
merged-token count (the processor's own ``get_number_of_image_patches`` on the file's size,
read from the header only) and each video placeholder replaced by its planned blocks (one
``<|vision_start|>...<|vision_end|>`` per grid row, see ``assets.video.hybrid``). Pads and vision
markers are special tokens, so growing them adds exactly that many tokens: counting is one
tokenisation per sample, and tests compare it with the processor's ``len(input_ids)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from assets.contract.chat_template import render_chatml
from assets.contract.conversation import Rejection
from assets.contract.media import RejectRow
from assets.contract.progress import Progress
from assets.contract.schema import described
from assets.video.inputs import video_text_tokens

STAGE = "token_counts"
COUNT_SCHEMA = described(
    pa.schema(
        [
            pa.field("sample_id", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("category", pa.string(), nullable=False),
            pa.field("n_tokens", pa.int64(), nullable=False),
            pa.field("n_text_tokens", pa.int64(), nullable=False),
            pa.field("n_image_tokens", pa.int64(), nullable=False),
            pa.field("n_video_tokens", pa.int64(), nullable=False),
            pa.field("n_images", pa.int32(), nullable=False),
            pa.field("n_videos", pa.int32(), nullable=False),
        ]
    ),
    {
        "sample_id": "the ChatML sample (chatml/<source>)",
        "source": "its source",
        "category": "its ETVLM category",
        "n_tokens": "exact length with the base model's processor and chat template: text + image + video tokens",
        "n_text_tokens": "tokens of the rendered chat text, special tokens included",
        "n_image_tokens": "image pad tokens from the image grids (grid_t x grid_h x grid_w / 4 per image)",
        "n_video_tokens": "video pad tokens from the frame plans in video_frames",
        "n_images": "image parts",
        "n_videos": "video parts",
    },
)


@dataclass
class TokenCounter:
    """Counts with one processor; ``videos`` maps (sample_id, video_no) -> grid rows, or to a
    (reason, detail) pair for a video the video stage rejected."""

    processor: Any
    videos: Mapping[tuple[str, int], Any]

    def image_tokens(self, path: str) -> int:
        from PIL import Image

        try:
            with Image.open(path) as img:
                width, height = img.size
        except Exception as exc:  # unreadable or missing file
            raise RejectRow("unreadable_image", f"{path}: {exc}") from None
        ip = self.processor.image_processor
        return ip.get_number_of_image_patches(height, width, {}) // (ip.merge_size**2)

    def count(self, row: Mapping[str, Any]) -> dict[str, Any]:
        messages = row["messages"]
        parts = [p for m in messages for p in m["content"]]
        n_text = len(self.processor.tokenizer(render_chatml(messages))["input_ids"])
        image_tokens = video_tokens = 0
        n_images = n_videos = 0
        for p in parts:
            if p["type"] == "image":
                n_images += 1
                image_tokens += self.image_tokens(p["path"])
                n_text -= 1  # the placeholder's single pad becomes image tokens
            elif p["type"] == "video":
                plan = self.videos.get((row["sample_id"], n_videos))
                if plan is None:
                    raise RejectRow("video_not_sampled", f"video {n_videos} has no frame plan")
                if isinstance(plan, tuple) and len(plan) == 2 and isinstance(plan[0], str):
                    raise RejectRow(f"video_{plan[0]}", f"video {n_videos}: {plan[1]}")
                visual, markers = video_text_tokens(plan)
                video_tokens += visual
                n_text += markers - 2 - 1  # one block's markers and pad are already counted
                n_videos += 1
        return {
            "sample_id": row["sample_id"],
            "source": row["source"],
            "category": row["category"],
            "n_tokens": n_text + image_tokens + video_tokens,
            "n_text_tokens": n_text,
            "n_image_tokens": image_tokens,
            "n_video_tokens": video_tokens,
            "n_images": n_images,
            "n_videos": n_videos,
        }


def count_table(
    rows: Sequence[Mapping[str, Any]], counter: TokenCounter, progress: Progress | None = None
) -> tuple[list[dict], list[dict]]:
    """(counts, rejections) for conversation rows; a sample that cannot be counted is rejected.
    ``progress`` (if given) is told about every row."""
    counts, rejected = [], []
    for row in rows:
        try:
            counts.append(counter.count(row))
        except RejectRow as exc:
            source_rows = list(row.get("source_rows") or [])
            rejected.append(Rejection(row["sample_id"], row["source"], STAGE, exc.reason, exc.detail, source_rows).to_row())
        if progress is not None:
            progress.update()
    return counts, rejected


def video_token_mismatches(
    counts: Sequence[Mapping[str, Any]], samples: Sequence[Mapping[str, Any]], videos: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The check on the video_frames -> token_counts edge: every counted sample's
    ``n_video_tokens`` must equal the sum of ``visual_tokens`` of its videos in videos.parquet
    (found through samples.parquet), and ``n_videos`` the number of its video parts. Returns
    one row per sample that disagrees (empty when the edge holds)."""
    tokens = {v["video_key"]: v["visual_tokens"] for v in videos if v["status"] == "ok"}
    parts: dict[tuple[str, str], list[str | None]] = {}
    for s in sorted(samples, key=lambda s: s["video_no"]):
        parts.setdefault((s["source"], s["sample_id"]), []).append(s["video_key"])
    bad = []
    for c in counts:
        keys = parts.get((c["source"], c["sample_id"]), [])
        if not c["n_videos"] and not keys:
            continue
        expected = sum(int(tokens.get(k) or 0) for k in keys)
        if c["n_videos"] != len(keys) or c["n_video_tokens"] != expected or any(k not in tokens for k in keys):
            bad.append({"sample_id": c["sample_id"], "n_videos": c["n_videos"], "video_parts": len(keys),
                        "n_video_tokens": c["n_video_tokens"], "frames_visual_tokens": expected})
    return bad
