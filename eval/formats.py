"""What every benchmark loader shares: the fetch options, the load context and cell helpers.

Each loader (``load`` of a module in ``eval/benchmarks``, whose docstring says what it was
checked against) reads the files of the benchmark's hub repository through
:class:`LoadContext` (``datasets.load_dataset`` on the hub id or on the local embedded sample,
same call), resolves media the way the benchmark's own toolkit / lmms-eval task does, and
builds the prompt as the lmms-eval task's default ``doc_to_text`` does, so the native runner
and an lmms-eval run ask the same question. A row that cannot become an item (missing media, a
malformed answer) is a :class:`~assets.contract.conversation.Rejection` with a reason, never
dropped silently.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assets.contract.atomic import write_bytes
from assets.contract.conversation import Rejection
from assets.sources.hub import HubSettings
from eval.items import EvalItem

STAGE = "benchmark"
LETTERS = "ABCDEFGHIJ"
MC_POST_PROMPT = "Answer with the option's letter from the given choices directly."


@dataclass(frozen=True)
class FetchOptions:
    """Which items to take. ``max_items_per_split`` caps every split (MME pairs stay whole);
    the haystack fields choose Visual Haystack's image counts and items per count;
    ``image_root`` is where Visual Haystack image paths resolve on the hub (COCO 2017)."""

    max_items_per_split: int | None = None
    haystack_sizes: tuple[int, ...] = (1, 2, 3, 5, 10, 25, 50, 100, 150)
    items_per_size: int = 4
    image_size: int = 56
    image_root: str | None = None
    seed: int = 0

    def generation_key(self) -> dict[str, Any]:
        """What the embedded generator depends on (part of the sample's stamp)."""
        return {"haystack_sizes": list(self.haystack_sizes), "items_per_size": self.items_per_size, "image_size": self.image_size}


@dataclass
class LoadContext:
    """Where a benchmark's rows and media are: ``location`` is what ``datasets.load_dataset``
    gets (hub id or local folder); ``media_base`` the folder archives were unpacked in;
    ``media_out`` where images stored inside the table are written as files."""

    benchmark: str
    location: str
    media_base: Path
    media_out: Path
    options: FetchOptions = field(default_factory=FetchOptions)
    settings: HubSettings = field(default_factory=HubSettings)
    cache_dir: Path | None = None
    rejected: list[Rejection] = field(default_factory=list)
    rows_in: int = 0

    def rows(self, data_files: Sequence[str], image_columns: Sequence[str] = ()) -> list[dict[str, Any]]:
        import datasets

        kwargs: dict[str, Any] = {
            "data_files": list(data_files),
            "split": "train",
            "token": self.settings.token,
            "revision": self.settings.revision,
        }
        if self.settings.max_rows:
            ds = datasets.load_dataset(self.location, streaming=True, **kwargs)
        else:
            ds = datasets.load_dataset(self.location, cache_dir=str(self.cache_dir) if self.cache_dir else None, **kwargs)
        for col in image_columns:
            if isinstance((ds.features or {}).get(col), datasets.Image):
                ds = ds.cast_column(col, datasets.Image(decode=False))
        rows = list(ds.take(self.settings.max_rows)) if self.settings.max_rows else list(ds)
        self.rows_in += len(rows)
        return rows

    def reject(self, sample_id: str, reason: str, detail: str, row_no: int, record: Any = "") -> None:
        self.rejected.append(Rejection(sample_id, self.benchmark, STAGE, reason, detail, [row_no], str(record)[:2000]))


def first_existing(candidates: Iterable[Path]) -> Path | None:
    for p in candidates:
        if p.is_file():
            return p
    return None


def clean_cell(value: Any) -> str | None:
    """A text cell, or None for the empty/NaN/"nan" cells of pandas-made parquet files."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    text = str(value).strip()
    return None if text == "" or text.lower() == "nan" else text


def image_file(value: Any, out_dir: Path, stem: str) -> Path:
    """Write an image cell ({bytes, path} or a PIL image) to ``out_dir`` once; return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(value, dict):
        data, name = value.get("bytes"), value.get("path") or ""
        if not data:
            raise ValueError("image cell has no bytes")
        ext = Path(name).suffix.lower() or ".png"
        path = out_dir / f"{stem}{ext}"
        if not path.is_file():
            write_bytes(path, data)
        return path
    if hasattr(value, "save"):
        path = out_dir / f"{stem}.png"
        if not path.is_file():
            value.save(path)
        return path
    raise ValueError(f"not an image cell: {type(value).__name__}")


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def limit_per_split(items: list[EvalItem], n: int | None, seed: int) -> list[EvalItem]:
    """At most ``n`` items per split, drawn by whole groups (seeded), original order kept."""
    if n is None:
        return items
    by_split: dict[str, dict[str, list[int]]] = {}
    for i, item in enumerate(items):
        by_split.setdefault(item.split, {}).setdefault(item.group, []).append(i)
    keep: set[int] = set()
    for split, groups in by_split.items():
        order = list(groups)
        random.Random(f"{seed}:{split}").shuffle(order)
        taken = 0
        for g in order:
            if taken >= n:
                break
            keep.update(groups[g])
            taken += len(groups[g])
    return [item for i, item in enumerate(items) if i in keep]


# ----------------------------------------------------------------------------- Visual Haystack


# ----------------------------------------------------------------------------- videos


def parse_lettered(options: Sequence[str]) -> dict[str, str]:
    """["A. foo", "B. bar"] -> {"A": "foo", "B": "bar"}; unlettered entries take their position."""
    out = {}
    for i, opt in enumerate(options):
        m = re.match(r"^\s*\(?([A-J])[\.\):]\s*(.*)$", str(opt), re.S)
        out[m.group(1) if m else LETTERS[i]] = (m.group(2) if m else str(opt)).strip()
    return out


# ----------------------------------------------------------------------------- images


