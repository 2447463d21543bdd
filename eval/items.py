"""The normalised benchmark item and the prediction row, shared by loaders, runner and scoring.

Every benchmark's published rows become :class:`EvalItem` s: the user text to send after the
media (built as lmms-eval builds it for that task), the gold answer (``yes``/``no`` or an
option letter), the media as local paths, and the field the benchmark reports by (``split``:
VideoMME duration, LongVideoBench duration group, MME/MMBench category, Visual Haystack image
count). ``group`` ties items that are scored together (the two questions of one MME image).
Items are stored as Parquet so the benchmark table can be read without project code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from assets.contract.schema import described

YES_NO = "yes_no"
CHOICE = "choice"

ITEM_SCHEMA = described(
    pa.schema(
        [
            pa.field("benchmark", pa.string(), nullable=False),
            pa.field("item_id", pa.string(), nullable=False),
            pa.field("prompt", pa.string(), nullable=False),
            pa.field("answer", pa.string(), nullable=False),
            pa.field("answer_type", pa.string(), nullable=False),
            pa.field("options", pa.string(), nullable=False),  # JSON {letter: text}
            pa.field("images", pa.list_(pa.string()), nullable=False),
            pa.field("video", pa.string()),
            pa.field("split", pa.string(), nullable=False),
            pa.field("group", pa.string(), nullable=False),
            pa.field("n_images", pa.int32(), nullable=False),
            pa.field("extra", pa.string(), nullable=False),  # JSON
        ]
    ),
    {
        "benchmark": "benchmark name",
        "item_id": "the item's id in the published benchmark",
        "prompt": "the question as lmms-eval builds it (options and answer instruction included)",
        "answer": "the gold answer (a letter, yes/no, ...)",
        "answer_type": "how the answer is parsed and scored: choice (a letter) or yes_no",
        "options": "JSON {letter: text} of a multiple-choice item",
        "images": "local paths of the item's images, in prompt order",
        "video": "local path of the item's video",
        "split": "the breakdown it is scored by (duration, category, number of images)",
        "group": "items scored together (the two questions of one MME image)",
        "n_images": "number of images in the prompt",
        "extra": "JSON: benchmark-specific fields kept from the published row",
    },
)

PREDICTION_SCHEMA = described(
    pa.schema(
        [
            pa.field("benchmark", pa.string(), nullable=False),
            pa.field("model", pa.string(), nullable=False),
            pa.field("item_id", pa.string(), nullable=False),
            pa.field("split", pa.string(), nullable=False),
            pa.field("group", pa.string(), nullable=False),
            pa.field("n_images", pa.int32(), nullable=False),
            pa.field("answer", pa.string(), nullable=False),
            pa.field("prediction", pa.string()),
            pa.field("raw_output", pa.string(), nullable=False),
            pa.field("correct", pa.bool_(), nullable=False),
            pa.field("status", pa.string(), nullable=False),  # ok | unparseable | error
            pa.field("reason", pa.string()),
            pa.field("n_prompt_tokens", pa.int64()),
            pa.field("extra", pa.string(), nullable=False),
        ]
    ),
    {
        "benchmark": "benchmark name",
        "model": "the evaluated model: <recipe>/<stage> or base",
        "item_id": "the item",
        "split": "its breakdown value (duration, category, number of images)",
        "group": "items scored together",
        "n_images": "images in the prompt",
        "answer": "the gold answer",
        "prediction": "the parsed answer (empty when unparseable)",
        "raw_output": "what the model generated, kept verbatim (empty in likelihood mode)",
        "correct": "prediction equals the answer",
        "status": "ok, unparseable or error",
        "reason": "why an item errored",
        "n_prompt_tokens": "prompt length in tokens (text + visual)",
        "extra": "JSON: candidate log-probabilities (likelihood mode), the video frame plan, ...",
    },
)


@dataclass
class EvalItem:
    benchmark: str
    item_id: str
    prompt: str
    answer: str
    answer_type: str
    options: dict[str, str] = field(default_factory=dict)
    images: list[str] = field(default_factory=list)
    video: str | None = None
    split: str = "all"
    group: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.answer_type not in (YES_NO, CHOICE):
            raise ValueError(f"answer_type must be {YES_NO!r} or {CHOICE!r}, got {self.answer_type!r}")
        if not self.group:
            self.group = self.item_id

    @property
    def n_images(self) -> int:
        return len(self.images)

    def to_row(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "item_id": self.item_id,
            "prompt": self.prompt,
            "answer": self.answer,
            "answer_type": self.answer_type,
            "options": json.dumps(self.options, ensure_ascii=False),
            "images": list(self.images),
            "video": self.video,
            "split": self.split,
            "group": self.group,
            "n_images": self.n_images,
            "extra": json.dumps(self.extra, ensure_ascii=False, default=str),
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> EvalItem:
        return cls(
            benchmark=row["benchmark"],
            item_id=row["item_id"],
            prompt=row["prompt"],
            answer=row["answer"],
            answer_type=row["answer_type"],
            options=json.loads(row["options"] or "{}"),
            images=list(row["images"] or []),
            video=row.get("video"),
            split=row["split"],
            group=row["group"],
            extra=json.loads(row["extra"] or "{}"),
        )


def items_table(items: list[EvalItem]) -> pa.Table:
    return pa.Table.from_pylist([i.to_row() for i in items], schema=ITEM_SCHEMA)


def read_items(path) -> list[EvalItem]:
    import pyarrow.parquet as pq

    return [EvalItem.from_row(r) for r in pq.read_table(path).to_pylist()]
