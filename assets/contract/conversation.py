"""The conversation contract (DESIGN.md section 4) shared by every stage after ``raw``.

A row is one training conversation: ``sample_id`` (stable hash of the source and the source
record), ``source``, ``category``, ``messages`` and ``source_rows`` (which raw rows it came
from, so "no sample lost" can be proven row by row). A rejected row keeps the same id, the
stage that rejected it and a machine-readable reason next to a human-readable detail.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

from assets.contract.schema import described

Role = Literal["system", "user", "assistant"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")
PartType = Literal["text", "image", "video"]

# The default sampling plan written into every video part; the video stage reads it.
DEFAULT_VIDEO_FPS = 2.0

PART_TYPE = pa.struct(
    [
        pa.field("type", pa.string(), nullable=False),
        pa.field("text", pa.string()),
        pa.field("path", pa.string()),
        pa.field("fps", pa.float64()),
        pa.field("max_frames", pa.int64()),
    ]
)
MESSAGE_TYPE = pa.struct(
    [
        pa.field("role", pa.string(), nullable=False),
        pa.field("content", pa.list_(PART_TYPE), nullable=False),
    ]
)
CONVERSATION_SCHEMA = described(
    pa.schema(
        [
            pa.field("sample_id", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("category", pa.string(), nullable=False),
            pa.field("messages", pa.list_(MESSAGE_TYPE), nullable=False),
            pa.field("source_rows", pa.list_(pa.int64()), nullable=False),
            pa.field("n_images", pa.int32(), nullable=False),
            pa.field("n_videos", pa.int32(), nullable=False),
            pa.field("n_chars", pa.int64(), nullable=False),
        ]
    ),
    {
        "sample_id": "stable id: hash of the source name and the source record (same record, same id)",
        "source": "registry name of the source (giraffe sources)",
        "category": "ETVLM category: long_text, short_image, interleave or video",
        "messages": "the conversation: turns of {role, content}, content = parts {type text|image|video, "
        "text, path, fps, max_frames}, media in their original positions",
        "source_rows": "indices of the raw rows this conversation came from (the no_sample_lost proof)",
        "n_images": "image parts in the conversation",
        "n_videos": "video parts in the conversation",
        "n_chars": "characters of text over all turns",
    },
)
REJECTED_SCHEMA = described(
    pa.schema(
        [
            pa.field("sample_id", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("stage", pa.string(), nullable=False),
            pa.field("reason", pa.string(), nullable=False),
            pa.field("detail", pa.string(), nullable=False),
            pa.field("source_rows", pa.list_(pa.int64()), nullable=False),
            pa.field("record", pa.string(), nullable=False),
        ]
    ),
    {
        "sample_id": "the id the sample would have had (same rule as the conversations)",
        "source": "registry name of the source",
        "stage": "the stage that rejected it (chatml, video_frames, token_counts, ...)",
        "reason": "machine-readable reason (missing_media, malformed_row, ...): group by this",
        "detail": "what exactly was wrong, for a person",
        "source_rows": "indices of the raw rows involved",
        "record": "the offending record as JSON (or the media path), to reproduce the problem",
    },
)


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text, "path": None, "fps": None, "max_frames": None}


def image_part(path: str) -> dict[str, Any]:
    return {"type": "image", "text": None, "path": path, "fps": None, "max_frames": None}


def video_part(path: str, fps: float = DEFAULT_VIDEO_FPS, max_frames: int | None = None) -> dict[str, Any]:
    return {"type": "video", "text": None, "path": path, "fps": fps, "max_frames": max_frames}


def canonical_json(record: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal records hash equally."""
    return json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return hashlib.sha256(value).hexdigest()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def make_sample_id(source: str, record: Any) -> str:
    """Stable id from the source name and the record's content.

    Content (not row position) keeps ids stable when a nightly refresh reorders or appends
    rows upstream; exact duplicates collide on purpose and are rejected as duplicates.
    """
    digest = hashlib.sha256(f"{source}\x00{canonical_json(record)}".encode()).hexdigest()
    return digest[:20]


@dataclass
class Conversation:
    sample_id: str
    source: str
    category: str
    messages: list[dict[str, Any]]
    source_rows: list[int]

    def to_row(self) -> dict[str, Any]:
        parts = [p for m in self.messages for p in m["content"]]
        return {
            "sample_id": self.sample_id,
            "source": self.source,
            "category": self.category,
            "messages": self.messages,
            "source_rows": list(self.source_rows),
            "n_images": sum(p["type"] == "image" for p in parts),
            "n_videos": sum(p["type"] == "video" for p in parts),
            "n_chars": sum(len(p["text"] or "") for p in parts),
        }


@dataclass
class Rejection:
    sample_id: str
    source: str
    stage: str
    reason: str
    detail: str
    source_rows: list[int]
    record: str = ""

    def to_row(self) -> dict[str, Any]:
        return {
            "sample_id": self.sample_id,
            "source": self.source,
            "stage": self.stage,
            "reason": self.reason,
            "detail": self.detail,
            "source_rows": list(self.source_rows),
            "record": self.record[:4000],
        }


@dataclass
class NormalizeResult:
    """What a normalisation pass produced; ``rows_in`` counts raw rows, not conversations."""

    rows_in: int
    conversations: list[Conversation] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    def conversation_table(self) -> pa.Table:
        return pa.Table.from_pylist([c.to_row() for c in self.conversations], schema=CONVERSATION_SCHEMA)

    def rejected_table(self) -> pa.Table:
        return pa.Table.from_pylist([r.to_row() for r in self.rejections], schema=REJECTED_SCHEMA)

    def reasons(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.rejections:
            counts[r.reason] = counts.get(r.reason, 0) + 1
        return dict(sorted(counts.items()))
