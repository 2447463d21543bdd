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

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

EFFECTIVE_THRESHOLD = 0.6

Row = Mapping[str, Any]


def _acc(rows: Sequence[Row]) -> float | None:
    return sum(bool(r["correct"]) for r in rows) / len(rows) if rows else None


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
    return {k: {"accuracy": _acc(v), "n": len(v), "correct": sum(bool(x["correct"]) for x in v)} for k, v in groups.items()}


@dataclass(frozen=True)
class CurvePoint:
    n_images: int
    accuracy: float
    n: int
    mean_tokens: float | None


def haystack_curve(rows: Sequence[Row]) -> list[CurvePoint]:
    """Accuracy and mean prompt tokens per number of images, ascending."""
    by_n: dict[int, list[Row]] = defaultdict(list)
    for r in rows:
        by_n[int(r["n_images"])].append(r)
    out = []
    for n in sorted(by_n):
        group = by_n[n]
        tokens = [int(r["n_prompt_tokens"]) for r in group if r.get("n_prompt_tokens") is not None]
        out.append(CurvePoint(n, _acc(group) or 0.0, len(group), sum(tokens) / len(tokens) if tokens else None))
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


def base_summary(benchmark: str, rows: Sequence[Row]) -> dict[str, Any]:
    """What every benchmark reports: items, accuracy, statuses and accuracy per split."""
    return {
        "benchmark": benchmark,
        "n": len(rows),
        "accuracy": _acc(rows),
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
