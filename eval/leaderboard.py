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
from eval.benchmarks.base import EFFECTIVE, PCT, SCORE, Plot
from eval.scoring import wilson_interval

BASE = "base"
CHANCE_ROW = "chance"
# model, method and source first, then each benchmark's own columns in registry order
HEAD_COLUMNS = (
    Column("model", "model", description="base, or recipe/stage of a checkpoint"),
    Column("method", "position method", description="the recipe's position-extension method"),
    Column("source", "source", description="native (this project's runner) or lmms-eval (its own task code)"),
)
TAIL_COLUMNS = (Column("answer_mode", "answer mode", description="generate (greedy + parsing), likelihood (argmax log-probability of Yes/No or the option letters) or cloze (of the options' texts, per byte)"),)
ALL_COLUMNS: tuple[Column, ...] = (*HEAD_COLUMNS, *(c for b in BENCHMARKS for c in b.columns), *TAIL_COLUMNS)
COLUMNS: tuple[str, ...] = tuple(c.key for c in ALL_COLUMNS)
BENCHMARK_COLUMNS: tuple[str, ...] = tuple(c.key for b in BENCHMARKS for c in b.columns)
REGRESSION_METRICS: tuple[str, ...] = tuple(b.regression_metric for b in BENCHMARKS if b.regression_metric)
MODE_NOTES = {
    "likelihood": "_answer mode `likelihood`: the argmax of each candidate answer's log-probability "
    "(lm-eval-harness multiple choice: Yes/No, or the option letters), not the paper's greedy-generation accuracy; "
    "the two are not comparable._",
    "cloze": "_answer mode `cloze`: yes/no items as in `likelihood`; a multiple-choice item's prediction is the option "
    "whose *text* has the highest log-probability per byte (OLMES's cloze formulation, lm-eval-harness `acc_norm`), "
    "not its letter and not the paper's greedy generation: it measures whether the model knows the answer, not "
    "whether it can name its letter. Chance is the same (1 / options)._",
}
"""Said under the table for each scored answer mode a row uses."""


def mode_notes(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The notes of the answer modes the rows use (a row of mixed modes reads ``a+b``)."""
    used = {m for r in rows for m in str(r.get("answer_mode") or "").split("+")}
    return [note for mode, note in MODE_NOTES.items() if mode in used]


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
    """One model's row: the numbers by column key, and under ``stats`` what each cell rests on
    (items, correct answers, chance, maximum, words; see ``Benchmark.cell_stats``)."""
    row: dict[str, Any] = {c: None for c in COLUMNS}
    row.update(model=model, method=method, source=source, stats={})
    for bench in BENCHMARKS:
        if summaries.get(bench.name):
            row.update(bench.cells(summaries[bench.name]))
            row["stats"].update(bench.cell_stats(summaries[bench.name]))
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


def chance_row(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """What a uniform random answer scores on the same items, per column (from the native rows'
    stats: every model answers the same items); None when no row says."""
    row: dict[str, Any] = {c: None for c in COLUMNS}
    row.update(model=CHANCE_ROW, method="uniform random answer", source="expected", stats={})
    found = False
    for c in ALL_COLUMNS:
        if c.kind not in (PCT, SCORE):
            continue
        for r in rows:
            st = (r.get("stats") or {}).get(c.key) or {}
            if st.get("chance") is not None:
                row[c.key] = round(float(st["chance"]), 1)
                row["stats"][c.key] = {k: st[k] for k in ("max",) if k in st}
                found = True
                break
    return row if found else None


def cell_text(column: Column, row: Mapping[str, Any]) -> str:
    """One cell as a reader sees it: ``62.5 [30.6-86.3] n=8`` (accuracy, its 95% Wilson
    interval, items), ``412 / 800 n=16`` (a score of its maximum), the effective length in
    words, or the value; ``–`` when there is none."""
    value = row.get(column.key)
    st = (row.get("stats") or {}).get(column.key) or {}
    if column.kind == EFFECTIVE and st.get("text"):
        return str(st["text"])
    if value is None:
        return "–"
    n = f" n={st['n']}" if st.get("n") else ""
    if column.kind == PCT:
        ci = wilson_interval(int(st["correct"]), int(st["n"])) if st.get("correct") is not None and st.get("n") else None
        interval = f" [{100 * ci[0]:.0f}-{100 * ci[1]:.0f}]" if ci else ""
        return f"{float(value):.1f}{interval}{n}"
    if column.kind == SCORE:
        top = f" / {st['max']:g}" if st.get("max") else ""
        return f"{float(value):.1f}{top}{n}"
    return str(value)


def display_rows(rows: Sequence[Mapping[str, Any]], with_chance: bool = True) -> tuple[list[Column], list[dict[str, str]]]:
    """(columns shown, one {header: cell text} per row, the chance row last)."""
    shown = [c for c in ALL_COLUMNS if c.in_table]
    table = list(rows)
    chance = chance_row([r for r in rows if r.get("source", "native") == "native"]) if with_chance else None
    if chance:
        table.append(chance)
    return shown, [{c.header: cell_text(c, r) for c in shown} for r in table]


def markdown(rows: Sequence[Mapping[str, Any]], banner: str | None = None) -> str:
    """The leaderboard as markdown: the banner line (what the base model is), the table with
    the chance row, and how to read the cells."""
    if not rows:
        return "_(nothing evaluated yet)_"
    shown, table = display_rows(rows)
    lines = [f"**{banner}**", ""] if banner else []
    lines += ["| " + " | ".join(c.header for c in shown) + " |", "|" + "---|" * len(shown)]
    for r in table:
        lines.append("| " + " | ".join(r[c.header].replace("|", "\\|") for c in shown) + " |")
    lines += ["", CELL_NOTE]
    return "\n".join(lines)


CELL_NOTE = (
    "_Cells: accuracy in % [95% Wilson interval] n=items; MME: score / maximum of the categories "
    "evaluated (the full set's maxima are 2000 and 800); the `chance` row is what a uniform random "
    "answer scores on the same items; effective length = the largest N with >= 60% at N and every "
    "smaller N (GIRAFFE 3.1)._"
)


def base_banner(info: Mapping[str, Any] | None) -> str | None:
    """The line that says what the base model is when it is the embedded tiny one (its config's
    ``giraffe_base_model`` record, written by ``training.base_training``); None for a real model."""
    if not info or info.get("kind") not in ("embedded-tiny", "embedded-tiny-random"):
        return None
    size = f"{info['parameters'] / 1e6:.2f}M parameters" if info.get("parameters") else "tiny"
    if info["kind"] == "embedded-tiny-random":
        what = "with random weights: every score is chance"
    else:
        what = (
            f"trained {info.get('steps', '?')} steps ({info.get('minutes', '?')} min on {info.get('device', 'CPU')}) "
            f"on synthetic tasks from the embedded data, original context {info.get('original_length', '?')} tokens"
        )
    return (
        f"Base model: the embedded tiny Qwen2-VL ({size}), {what}. These scores show the pipeline at work "
        "on generated data; they are not GIRAFFE's results (README: the paper's numbers)."
    )


def plots(
    results: Mapping[str, Mapping[str, Any]],
    rows: Sequence[Mapping[str, Any]],
    labels: Mapping[str, str],
    threshold: float,
    context: Mapping[str, Any] | None = None,
) -> list[Plot]:
    """Every benchmark's leaderboard plots, in registry order."""
    return [p for b in BENCHMARKS for p in b.plots(results, rows, labels, threshold, context)]


def tables(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    return [t for b in BENCHMARKS for t in b.tables(rows)]


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
