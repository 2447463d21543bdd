"""The leaderboard: every evaluated model x every benchmark, the plots, the regression check.

Scores are read from the evaluation folders (``<eval_root>/<benchmark>/<model>/scores.json``,
``<model>`` = ``base`` or ``<recipe>/<stage>``; see :func:`model_dir`), so the leaderboard is a
pure function of what was evaluated, and lmms-eval results (``eval.lmms``) join as rows of their
own. All accuracies are percentages; MME keeps its published scale (perception max 2000,
cognition max 800 on the full set).

Short-context regression (paper 2.1: an extended model must keep its short-context ability):
for each checkpoint whose recipe extends ``model/base``, MME (as % of its maximum over the
categories evaluated) and MMBench accuracy are compared with the base model's; a drop of more
than ``tolerance`` percentage points on either is a regression.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from eval.benchmarks import BENCHMARKS, Column
from eval.benchmarks.base import Plot

BASE = "base"
# model, method and source first, then each benchmark's own columns in registry order
HEAD_COLUMNS = (Column("model", "model"), Column("method", "method"), Column("source", "source"))
TAIL_COLUMNS = (Column("answer_mode", "answer mode"),)
ALL_COLUMNS: tuple[Column, ...] = (*HEAD_COLUMNS, *(c for b in BENCHMARKS for c in b.columns), *TAIL_COLUMNS)
COLUMNS: tuple[str, ...] = tuple(c.key for c in ALL_COLUMNS)
BENCHMARK_COLUMNS: tuple[str, ...] = tuple(c.key for b in BENCHMARKS for c in b.columns)
REGRESSION_METRICS: tuple[str, ...] = tuple(b.regression_metric for b in BENCHMARKS if b.regression_metric)
LIKELIHOOD_NOTE = (
    "_answer mode `likelihood`: the argmax of each candidate answer's log-probability "
    "(lm-eval-harness multiple choice), not the paper's greedy-generation accuracy; "
    "the two are not comparable._"
)


def model_id(recipe: str | None = None, stage: str | None = None) -> str:
    return BASE if recipe is None else f"{recipe}/{stage}"


def model_dir(eval_root: Path, benchmark: str, model: str) -> Path:
    return eval_root / benchmark / model


def method_label(method: Mapping[str, Any] | None) -> str:
    """A short name for a recipe's position method: ``mrope++``, ``v2pe(d=0.25)``, ..."""
    if not method:
        return "none (base)"
    rope = (method.get("rope") or {}).get("method", "none")
    v2pe = method.get("v2pe")
    parts = [] if rope == "none" and v2pe else [rope]
    if v2pe:
        parts.append(f"v2pe(d={v2pe.get('inference_delta', 0.25):g})")
    return " + ".join(parts)


def collect(eval_root: Path, benchmarks: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """{model: {benchmark: summary}} from every ``scores.json`` under ``eval_root``."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for bench in benchmarks:
        for path in sorted((eval_root / bench).glob("**/scores.json")):
            summary = json.loads(path.read_text())
            out.setdefault(summary["model"], {})[bench] = summary
    return out


def row_for(model: str, summaries: Mapping[str, Mapping[str, Any]], method: str, source: str = "native") -> dict[str, Any]:
    row: dict[str, Any] = {c: None for c in COLUMNS}
    row.update(model=model, method=method, source=source)
    for bench in BENCHMARKS:
        if summaries.get(bench.name):
            row.update(bench.cells(summaries[bench.name]))
    modes = sorted({s.get("answer_mode", "generate") for s in summaries.values()})  # older scores: generate
    row["answer_mode"] = "+".join(modes) if modes else None
    return row


def sort_rows(rows: list[dict[str, Any]], stage_order: Sequence[str] = ()) -> list[dict[str, Any]]:
    def key(r):
        model = r["model"]
        if model == BASE:
            return (0, "", 0, r["source"])
        recipe, _, stage = model.partition("/")
        return (1, recipe, stage_order.index(stage) if stage in stage_order else 99, r["source"])

    return sorted(rows, key=key)


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "_(nothing evaluated yet)_"
    shown = [c for c in ALL_COLUMNS if c.in_table]
    lines = ["| " + " | ".join(c.header for c in shown) + " |", "|" + "---|" * len(shown)]
    for r in rows:
        lines.append("| " + " | ".join("–" if r.get(c.key) is None else str(r.get(c.key)) for c in shown) + " |")
    return "\n".join(lines)


def plots(
    results: Mapping[str, Mapping[str, Any]], rows: Sequence[Mapping[str, Any]], labels: Mapping[str, str], threshold: float
) -> list[Plot]:
    """Every benchmark's leaderboard plots, in registry order."""
    return [p for b in BENCHMARKS for p in b.plots(results, rows, labels, threshold)]


def tables(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    return [t for b in BENCHMARKS for t in b.tables(rows)]


# ----------------------------------------------------------------------------- plots


# ----------------------------------------------------------------------------- regression


def short_context_regressions(
    rows: Sequence[Mapping[str, Any]], base_of: Mapping[str, str | None], tolerance_pp: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(comparisons, regressions). ``base_of[model]`` is the base model id a checkpoint extends
    (``"base"`` for ``model/base`` recipes, None when its base was not evaluated here)."""
    native = {r["model"]: r for r in rows if r.get("source", "native") == "native"}
    base = native.get(BASE)
    comparisons, regressions = [], []
    for model, r in native.items():
        if model == BASE:
            continue
        ref = native.get(base_of.get(model) or "") if base_of.get(model) else None
        for metric in REGRESSION_METRICS:
            got, want = r.get(metric), (ref or {}).get(metric)
            if got is None:
                continue
            entry = {"model": model, "metric": metric, "base": want, "checkpoint": got}
            if ref is None or want is None:
                entry.update(drop=None, status="no base score" if base is None or ref is None else "base not evaluated")
            else:
                drop = round(want - got, 2)
                entry.update(drop=drop, status="REGRESSION" if drop > tolerance_pp else "ok")
                if drop > tolerance_pp:
                    regressions.append(entry)
            comparisons.append(entry)
    return comparisons, regressions
