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

from assets.contract.markdown import PLOT_WIDE, figure_png, pyplot

BASE = "base"
COLUMNS = (
    "model",
    "method",
    "source",
    "vh_effective_images",
    "vh_effective_tokens",
    "vh_last_passing_images",
    "videomme_short",
    "videomme_medium",
    "videomme_long",
    "videomme_overall",
    "longvideobench",
    "mme_perception",
    "mme_cognition",
    "mme_pct",
    "mmbench",
    "answer_mode",
)
LIKELIHOOD_NOTE = (
    "_answer mode `likelihood`: the argmax of each candidate answer's log-probability "
    "(lm-eval-harness multiple choice), not the paper's greedy-generation accuracy; "
    "the two are not comparable._"
)
VIDEOMME_DURATIONS = ("short", "medium", "long")


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


def _pct(x: float | None) -> float | None:
    return None if x is None else round(100 * x, 1)


def row_for(model: str, summaries: Mapping[str, Mapping[str, Any]], method: str, source: str = "native") -> dict[str, Any]:
    row: dict[str, Any] = {c: None for c in COLUMNS}
    row.update(model=model, method=method, source=source)
    vh = summaries.get("visual_haystack")
    if vh:
        eff = vh.get("effective_length") or {}
        row["vh_effective_images"] = eff.get("n_images")
        row["vh_effective_tokens"] = None if eff.get("tokens") is None else round(eff["tokens"])
        row["vh_last_passing_images"] = eff.get("last_passing_n")
    vm = summaries.get("videomme")
    if vm:
        for d in VIDEOMME_DURATIONS:
            row[f"videomme_{d}"] = _pct((vm["by_split"].get(d) or {}).get("accuracy"))
        row["videomme_overall"] = _pct(vm["accuracy"])
    if summaries.get("longvideobench"):
        row["longvideobench"] = _pct(summaries["longvideobench"]["accuracy"])
    mme = (summaries.get("mme") or {}).get("mme")
    if mme:
        row["mme_perception"] = round(mme["perception"], 1)
        row["mme_cognition"] = round(mme["cognition"], 1)
        row["mme_pct"] = None if mme.get("total_pct") is None else round(mme["total_pct"], 1)
    if summaries.get("mmbench"):
        row["mmbench"] = _pct(summaries["mmbench"]["accuracy"])
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
    header = (
        "| model | method | source | VH eff. images | VH eff. tokens | VideoMME S | M | L | overall "
        "| LongVideoBench | MME-P | MME-C | MME % | MMBench | answer mode"
    )
    lines = [header + " |", "|" + "---|" * header.count("|")]
    for r in rows:
        cells = [r.get(c) for c in COLUMNS if c != "vh_last_passing_images"]
        lines.append("| " + " | ".join("–" if v is None else str(v) for v in cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- plots


def haystack_plot(curves: Mapping[str, Sequence[Mapping[str, Any]]], labels: Mapping[str, str], threshold: float = 0.6) -> bytes:
    """Accuracy (%) vs number of images, one line per model, the threshold dashed (Figure 4)."""
    fig, ax = pyplot().subplots(figsize=PLOT_WIDE)
    for model, points in curves.items():
        xs = [p["n_images"] for p in points]
        ys = [100 * p["accuracy"] for p in points]
        ax.plot(xs, ys, marker="o", label=labels.get(model, model))
    ax.axhline(100 * threshold, color="grey", linestyle="--", linewidth=1, label=f"{threshold:.0%} (effective length)")
    ax.axhline(50, color="lightgrey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("number of images")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.set_title("Visual Haystack single needle")
    ax.legend(fontsize=9, loc="lower left")
    return figure_png(fig)


def videomme_plot(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """Grouped bars: VideoMME accuracy by duration (and overall), one bar per model."""
    groups = (*VIDEOMME_DURATIONS, "overall")
    models = [r for r in rows if r.get("videomme_overall") is not None]
    fig, ax = pyplot().subplots(figsize=PLOT_WIDE)
    width = 0.8 / max(1, len(models))
    for i, r in enumerate(models):
        ys = [r.get(f"videomme_{g}") or 0.0 for g in groups]
        xs = [g + (i - (len(models) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, ys, width=width, label=f"{r['model']} ({r['method']})")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Video-MME by duration")
    if models:
        ax.legend(fontsize=9)
    return figure_png(fig)


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
        for metric in ("mme_pct", "mmbench"):
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
