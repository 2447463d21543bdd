"""Scores from prediction rows: accuracy per split, the Visual Haystack curve and the effective
length (each benchmark's own scores, such as MME's, live in its module under eval/benchmarks).

Every function takes the prediction rows of one model on one benchmark (dicts with at least
``split``, ``group``, ``correct``, ``status``; see ``eval.items.PREDICTION_SCHEMA``).
Unparseable outputs and items that failed (a missing image, an undecodable video) are rows
with ``correct = False``: they stay in every denominator, so a model cannot gain accuracy by
failing to answer.

Effective length (GIRAFFE 3.1): Visual Haystack single needle, accuracy by number of images N;
the effective length is the largest N whose accuracy is at least the threshold (60%, chance is
50%), reported with that N's prompt token count. "Largest N" is made precise here as the
**prefix rule**: the largest evaluated N such that every evaluated N' <= N passes. The paper's
wording ("achieves effectiveness up to 15 images") describes the point where the falling curve
crosses the threshold; with few items per N the curve is noisy, and a lucky pass at a large N
after failures at smaller ones must not count as context the model can use. The other reading
(the largest passing N regardless of smaller ones) is reported next to it as
``last_passing_n``; both agree on a monotone curve.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

EFFECTIVE_THRESHOLD = 0.6
Z95 = 1.959963984540054  # two-sided 95% normal quantile

Row = Mapping[str, Any]


def _acc(rows: Sequence[Row]) -> float | None:
    return sum(bool(r["correct"]) for r in rows) / len(rows) if rows else None


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """95% Wilson score interval of a binomial proportion (None without items). Unlike the
    normal interval it stays inside [0, 1] and is usable at the handful of items per cell an
    embedded run has (4 correct of 4 gives [0.51, 1.0], not [1.0, 1.0])."""
    if n <= 0:
        return None
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if correct == 0 else max(0.0, centre - half)  # exact ends: no float residue
    hi = 1.0 if correct == n else min(1.0, centre + half)
    return lo, hi


def n_choices(row: Row) -> int | None:
    """How many answers the item offered (2 for yes/no), from the prediction row's extra."""
    try:
        k = json.loads(row.get("extra") or "{}").get("n_choices")
    except (TypeError, ValueError):
        return None
    return int(k) if k else None


def chance_accuracy(rows: Sequence[Row]) -> float | None:
    """Expected accuracy of a uniform random guess over the same items: mean of 1 / choices
    (None when a row does not say how many choices its item had)."""
    ks = [n_choices(r) for r in rows]
    if not ks or any(k is None for k in ks):
        return None
    return sum(1 / k for k in ks) / len(ks)


def status_counts(rows: Iterable[Row]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for r in rows:
        out[r["status"]] += 1
    return dict(out)


def accuracy_by(rows: Sequence[Row], key: str = "split") -> dict[str, dict[str, Any]]:
    """{value: {"accuracy", "n", "correct"}} for each value of ``key``, in first-seen order."""
    groups: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault(str(r[key]), []).append(r)
    return {
        k: {"accuracy": _acc(v), "n": len(v), "correct": sum(bool(x["correct"]) for x in v), "chance": chance_accuracy(v)}
        for k, v in groups.items()
    }


@dataclass(frozen=True)
class CurvePoint:
    n_images: int
    accuracy: float
    n: int
    mean_tokens: float | None
    correct: int = 0


def haystack_curve(rows: Sequence[Row]) -> list[CurvePoint]:
    """Accuracy and mean prompt tokens per number of images, ascending."""
    by_n: dict[int, list[Row]] = defaultdict(list)
    for r in rows:
        by_n[int(r["n_images"])].append(r)
    out = []
    for n in sorted(by_n):
        group = by_n[n]
        tokens = [int(r["n_prompt_tokens"]) for r in group if r.get("n_prompt_tokens") is not None]
        correct = sum(bool(r["correct"]) for r in group)
        out.append(CurvePoint(n, _acc(group) or 0.0, len(group), sum(tokens) / len(tokens) if tokens else None, correct))
    return out


@dataclass(frozen=True)
class EffectiveLength:
    """``n_images``/``tokens``: the prefix rule (module docstring); None when the smallest N
    already fails. ``last_passing_*``: the largest passing N regardless of smaller ones."""

    threshold: float
    n_images: int | None
    tokens: float | None
    last_passing_n: int | None
    last_passing_tokens: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def effective_length(curve: Sequence[CurvePoint], threshold: float = EFFECTIVE_THRESHOLD) -> EffectiveLength:
    points = sorted(curve, key=lambda p: p.n_images)
    prefix: CurvePoint | None = None
    for p in points:
        if p.accuracy >= threshold:
            prefix = p
        else:
            break
    passing = [p for p in points if p.accuracy >= threshold]
    last = passing[-1] if passing else None
    return EffectiveLength(
        threshold=threshold,
        n_images=prefix.n_images if prefix else None,
        tokens=prefix.mean_tokens if prefix else None,
        last_passing_n=last.n_images if last else None,
        last_passing_tokens=last.mean_tokens if last else None,
    )


def pct(x: float | None) -> float | None:
    """A share as a percentage with one decimal (tables and the leaderboard)."""
    return None if x is None else round(100 * x, 1)


def pct_stats(summary: Mapping[str, Any] | None) -> dict[str, Any]:
    """A leaderboard cell's basis from a (split) summary: items, correct, chance in %."""
    if not summary:
        return {}
    return {"n": summary.get("n"), "correct": summary.get("correct"), "chance": pct(summary.get("chance"))}


def base_summary(benchmark: str, rows: Sequence[Row]) -> dict[str, Any]:
    """What every benchmark reports: items, accuracy (with the correct count and chance),
    statuses and accuracy per split."""
    return {
        "benchmark": benchmark,
        "n": len(rows),
        "correct": sum(bool(r["correct"]) for r in rows),
        "accuracy": _acc(rows),
        "chance": chance_accuracy(rows),
        "status": status_counts(rows),
        "by_split": accuracy_by(rows, "split"),
    }


def lmms_metric(task: Mapping[str, Any], name: str) -> float | None:
    """An lmms-eval task metric ``<name>,<filter>`` (any filter, ``none`` first); dict values keep their total score."""
    keys = [k for k in task if k.split(",")[0] == name]
    keys.sort(key=lambda k: (k != f"{name},none", k))
    for k in keys:
        value = task[k]
        if isinstance(value, Mapping):
            value = value.get("total_score", value.get("score"))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None
