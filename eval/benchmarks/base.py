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


PCT, SCORE, EFFECTIVE, TEXT = "pct", "score", "effective", "text"


@dataclass(frozen=True)
class Column:
    """One leaderboard column: ``key`` in the rows (and leaderboard.json), ``header`` (the full
    name) in the tables; ``in_table=False`` keeps a value in the rows only. ``kind`` says how a
    cell is written: ``pct`` an accuracy in % with its 95% Wilson interval and item count,
    ``score`` a score out of its maximum (MME), ``effective`` the effective length in words,
    ``text`` as it is. ``description`` is the column's tooltip in the UI table."""

    key: str
    header: str
    in_table: bool = True
    kind: str = TEXT
    description: str = ""


Plot = tuple[str, str, bytes]  # (file and metadata key, title, PNG)


@dataclass(frozen=True)
class LmmsLocalTask:
    """An lmms-eval task that can run on the local copy of this benchmark: lmms-eval's own task
    file (``yaml``, relative to ``lmms_eval/tasks``) with its dataset pointed at the rows of the
    published table (``data_files``, relative to the sample) that became items, as ``split``."""

    task: str
    yaml: str
    split: str
    data_files: str


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
    lmms_local: tuple[LmmsLocalTask, ...] = ()  # of those, the ones that run on the local sample
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

    def cell_stats(self, summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """What each cell rests on, by column key: ``n`` (items), ``correct`` (for the
        interval), ``chance`` (same unit as the cell), ``max`` (scores), ``text`` (words)."""
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
        context: Mapping[str, Any] | None = None,
    ) -> list[Plot]:
        """``context``: what the plots may mark, e.g. ``original_length`` (the base model's
        original context in tokens)."""
        return []

    def tables(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
        """(metadata key, markdown) tables of the leaderboard asset beyond the main one."""
        return []
