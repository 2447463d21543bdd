"""What a benchmark is to the rest of the project: one object that carries its own code.

A :class:`Benchmark` names its hub repository and media, reads its published rows into
:class:`~eval.items.EvalItem` (``load``), writes its offline sample in the hub's layout
(``generate``), scores prediction rows (``summarize``), and says what it adds to the
leaderboard (columns, cells, plots, tables, the lmms-eval metrics that fill the same cells).
The registry, the fetch, the Dagster assets and the leaderboard only ever call these, so no
code outside a benchmark's module branches on its name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from eval.formats import FetchOptions, LoadContext
from eval.items import EvalItem
from eval.scoring import EFFECTIVE_THRESHOLD, Row, base_summary


@dataclass(frozen=True)
class Column:
    """One leaderboard column: ``key`` in the rows (and leaderboard.json), ``header`` in the
    markdown table; ``in_table=False`` keeps a value in the rows only."""

    key: str
    header: str
    in_table: bool = True


Plot = tuple[str, str, bytes]  # (file and metadata key, title, PNG)


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    hub_id: str
    kind: str  # multi_image | video | image
    order: int  # position in tables, plots and the asset list
    media_patterns: tuple[str, ...] = ()  # hub mode: files snapshot_download fetches besides the table
    archives: tuple[str, ...] = ()  # unpacked in place (zip / tar)
    split_archives: tuple[tuple[str, str], ...] = ()  # (glob of parts, joined name), joined first
    split_label: str = "split"  # what ``EvalItem.split`` means, for tables and plots
    paper: str = ""
    short_context: bool = False  # a short-context benchmark (the regression check's)
    options: type[pydantic.BaseModel] | None = None  # what its asset's config adds; ``fetch_options(mode)``
    columns: tuple[Column, ...] = ()
    regression_metric: str | None = None  # the column compared with the base model
    lmms_tasks: tuple[str, ...] = ()  # lmms-eval tasks that measure the same thing
    base_metadata_keys: tuple[str, ...] = ()  # of ``metadata()``: what the base model's asset shows

    # -- data
    def load(self, ctx: LoadContext) -> list[EvalItem]:
        raise NotImplementedError

    def generate(self, root: Path, options: FetchOptions, seed: int) -> None:
        raise NotImplementedError

    # -- scores
    def summarize(self, rows: Sequence[Row], threshold: float = EFFECTIVE_THRESHOLD) -> dict[str, Any]:
        """Everything the leaderboard needs about one model on this benchmark (JSON-serialisable)."""
        return base_summary(self.name, rows) | self.extra_summary(rows, threshold)

    def extra_summary(self, rows: Sequence[Row], threshold: float) -> dict[str, Any]:
        return {}

    def metadata(self, summary: Mapping[str, Any]) -> dict[str, Any]:
        """Extra metadata of an evaluation asset (``Markdown`` values are shown as markdown)."""
        return {}

    # -- the leaderboard
    def cells(self, summary: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    def lmms_cells(self, tasks: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """This benchmark's cells from an lmms-eval results file's ``results`` (task -> metrics)."""
        return {}

    def plots(
        self,
        results: Mapping[str, Mapping[str, Any]],
        rows: Sequence[Mapping[str, Any]],
        labels: Mapping[str, str],
        threshold: float,
    ) -> list[Plot]:
        return []

    def tables(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
        """(metadata key, markdown) tables of the leaderboard asset beyond the main one."""
        return []
