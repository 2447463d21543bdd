"""Scores from prediction rows: accuracy per split, MME scores, the Visual Haystack curve and
the effective length.

Every function takes the prediction rows of one model on one benchmark (dicts with at least
``split``, ``group``, ``correct``, ``status``; see ``eval.items.PREDICTION_SCHEMA``).
Unparseable outputs and items that failed (a missing image, an undecodable video) are rows
with ``correct = False``: they stay in every denominator, so a model cannot gain accuracy by
failing to answer.

MME (Fu et al., 2023; lmms-eval ``mme_aggregate_results``): per category, ``acc`` is the
share of questions answered right and ``acc+`` the share of images whose two questions are
both right; the category score is ``(acc + acc+) * 100`` (at most 200); perception is the sum
over the 10 perception categories (max 2000), cognition over the 4 cognition ones (max 800).

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

MME_PERCEPTION = (
    "existence",
    "count",
    "position",
    "color",
    "posters",
    "celebrity",
    "scene",
    "landmark",
    "artwork",
    "OCR",
)
MME_COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
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


def mme_scores(rows: Sequence[Row]) -> dict[str, Any]:
    """MME perception/cognition scores from rows whose ``split`` is the category and ``group``
    the image (question_id). An image without exactly two questions is still scored (acc+
    needs all of its questions right) and counted in ``unpaired_images``."""
    by_cat: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by_cat[str(r["split"])][str(r["group"])].append(bool(r["correct"]))
    categories: dict[str, dict[str, Any]] = {}
    unpaired = 0
    for cat, images in by_cat.items():
        answers = [a for v in images.values() for a in v]
        acc = sum(answers) / len(answers)
        acc_plus = sum(all(v) for v in images.values()) / len(images)
        unpaired += sum(len(v) != 2 for v in images.values())
        kind = "perception" if cat in MME_PERCEPTION else "cognition" if cat in MME_COGNITION else "other"
        categories[cat] = {
            "kind": kind,
            "acc": acc,
            "acc_plus": acc_plus,
            "score": (acc + acc_plus) * 100,
            "images": len(images),
            "questions": len(answers),
        }
    perception = sum(c["score"] for c in categories.values() if c["kind"] == "perception")
    cognition = sum(c["score"] for c in categories.values() if c["kind"] == "cognition")
    n_scored = sum(c["kind"] != "other" for c in categories.values())
    return {
        "perception": perception,
        "cognition": cognition,
        "total": perception + cognition,
        # share of the maximum over the categories present, comparable across subsets
        "total_pct": (perception + cognition) / (200 * n_scored) * 100 if n_scored else None,
        "categories": categories,
        "unpaired_images": unpaired,
    }


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


def summarize(benchmark: str, rows: Sequence[Row], threshold: float = EFFECTIVE_THRESHOLD) -> dict[str, Any]:
    """Everything the leaderboard needs about one model on one benchmark (JSON-serialisable)."""
    out: dict[str, Any] = {
        "benchmark": benchmark,
        "n": len(rows),
        "accuracy": _acc(rows),
        "status": status_counts(rows),
        "by_split": accuracy_by(rows, "split"),
    }
    if benchmark == "mme":
        out["mme"] = mme_scores(rows)
    if benchmark == "visual_haystack":
        curve = haystack_curve(rows)
        out["curve"] = [asdict(p) for p in curve]
        out["effective_length"] = effective_length(curve, threshold).to_dict()
    return out
