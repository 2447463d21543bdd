"""ETVLM ratio mixing: whole packed sequences chosen to reach token shares (no Dagster).

Targets (paper Table 7 and section 2.3, all configurable): category shares by tokens
(long text 20%, short image 25%, interleave 25%, video 30%) and a long share (samples over 8K
tokens: 60% of the mix). Sequences are homogeneous in a stratum (category, long), so a mix is
a weight per stratum. The weights come from iterative proportional fitting (IPF) of the
available-token table (category x long) to the two marginals: IPF keeps the table's
structure (cells with no data stay zero; among feasible tables it is the one closest to the
data in KL divergence, so strata are re-weighted as little as possible).

When the data cannot reach a target, the plan says so instead of failing: a category with
no sequences at this stage is dropped and the other shares renormalised; a long share outside
what the categories allow (e.g. short images are never long) is clamped to the nearest
reachable value; with no long (or no short) sequences at all - the 8K stage, where nothing is
over 8K - the long target is "not applicable". The achieved shares sit next to the targets.

Choosing sequences: a stratum with target ``t`` tokens and ``A`` available takes every
sequence ``floor(t / A)`` times (copies 0, 1, ...) and then a seeded random subset for the
remainder: sequences in a random order, each taken while it fits the remainder, then one more
if that lands closer. The generator is ``numpy.random.default_rng([seed, crc32(stage)])``,
used in a fixed order, so re-running gives the same rows in the same (shuffled) order.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from assets.contract.categories import CATEGORIES
from assets.contract.schema import described
from assets.packing.stage import SEQUENCE_DESCRIPTIONS, SEQUENCE_SCHEMA, stratum_name, stratum_order

# paper Table 7: long text 20%, short image 25%, interleave 25%, video 30% of the tokens
DEFAULT_CATEGORY_SHARES: dict[str, float] = dict(zip(CATEGORIES, (0.20, 0.25, 0.25, 0.30), strict=True))
DEFAULT_LONG_SHARE = 0.60

MIXTURE_SCHEMA = described(
    SEQUENCE_SCHEMA.append(pa.field("copy", pa.int64(), nullable=False)),
    {**SEQUENCE_DESCRIPTIONS, "copy": "0 for a sequence's first use in the mix, 1, 2, ... for repeats (upsampling)"},
)

Stratum = tuple[str, bool]


def ipf(seed: np.ndarray, row_targets: np.ndarray, col_targets: np.ndarray, *, tol: float = 1e-12, max_iter: int = 10_000) -> np.ndarray:
    """Scale ``seed`` (non-negative; zeros stay zero) so its row and column sums reach the
    targets (equal totals). Alternates row and column scaling until both marginals are within
    ``tol`` (relative to the total); raises if they are not reached in ``max_iter`` rounds."""
    table = np.asarray(seed, dtype=float).copy()
    rows, cols = np.asarray(row_targets, float), np.asarray(col_targets, float)
    if not np.isclose(rows.sum(), cols.sum()):
        raise ValueError(f"row targets sum to {rows.sum()}, column targets to {cols.sum()}")
    scale = max(rows.sum(), 1e-300)
    for _ in range(max_iter):
        r = table.sum(axis=1)
        table *= np.divide(rows, r, out=np.zeros_like(r), where=r > 0)[:, None]
        c = table.sum(axis=0)
        table *= np.divide(cols, c, out=np.zeros_like(c), where=c > 0)[None, :]
        err = max(np.abs(table.sum(axis=1) - rows).max(), np.abs(table.sum(axis=0) - cols).max())
        if err <= tol * scale:
            return table
    raise ValueError(f"IPF did not converge (marginal error {err / scale:.2e}); targets may be infeasible")


@dataclass(frozen=True)
class MixturePlan:
    """Share of the budget for each stratum, and what the data allowed."""

    shares: dict[Stratum, float]  # stratum -> share of the mix (sums to 1)
    category_targets: dict[str, float]  # configured
    long_target: float | None  # configured (None: no long target)
    long_applicable: bool
    long_planned: float | None  # what the plan reaches (clamped when the target is unreachable)
    long_range: tuple[float, float]  # reachable long shares given the category shares
    category_planned: dict[str, float]
    notes: list[str] = field(default_factory=list)


def plan_mixture(available: Mapping[Stratum, int], category_shares: Mapping[str, float], long_share: float | None) -> MixturePlan:
    """Stratum shares that meet ``category_shares`` and ``long_share`` as closely as the data
    allows (``available``: tokens per stratum)."""
    if any(v < 0 for v in category_shares.values()) or sum(category_shares.values()) <= 0:
        raise ValueError(f"category shares must be non-negative and not all zero: {dict(category_shares)}")
    if long_share is not None and not 0.0 <= long_share <= 1.0:
        raise ValueError(f"long share must be in [0, 1], got {long_share}")
    notes: list[str] = []
    total_share = sum(category_shares.values())
    targets = {c: v / total_share for c, v in category_shares.items()}
    if not np.isclose(total_share, 1.0):
        notes.append(f"category shares sum to {total_share:g}; normalised to 1")
    present = {c for (c, _), tok in available.items() if tok > 0}
    for c in sorted(present - set(targets)):
        notes.append(f"category {c} has no target share: left out of the mix")
    cats = [c for c in targets if targets[c] > 0 and c in present]
    for c in targets:
        if targets[c] > 0 and c not in present:
            notes.append(f"no {c} sequences at this stage: its {targets[c]:.0%} goes to the other categories")
    if not cats:
        raise ValueError("no sequences of any targeted category at this stage")
    kept = sum(targets[c] for c in cats)
    planned = {c: (targets[c] / kept if c in cats else 0.0) for c in targets}
    table = np.array([[available.get((c, False), 0), available.get((c, True), 0)] for c in cats], dtype=float)
    has_short, has_long = table[:, 0] > 0, table[:, 1] > 0
    row = np.array([planned[c] for c in cats])
    lo = float(row[~has_short].sum())  # categories that are only long
    hi = float(row[has_long].sum())  # categories with any long
    applicable = long_share is not None and has_long.any() and has_short.any()
    if long_share is not None and not applicable:
        notes.append("long share not applicable: " + ("no long sequences at this stage" if not has_long.any() else "no short sequences at this stage"))
    if not applicable:
        mix = table / table.sum(axis=1, keepdims=True) * row[:, None]
        q = float(mix[:, 1].sum())
    else:
        q = min(max(long_share, lo), hi)
        if not np.isclose(q, long_share):
            notes.append(f"long share {long_share:.0%} unreachable with these category shares and data (reachable {lo:.1%}-{hi:.1%}): planned {q:.1%}")
        if q <= lo or q >= hi:  # on the boundary: mixed categories go all short / all long
            side = 0 if q <= lo else 1
            mix = np.zeros_like(table)
            mix[~has_short, 1] = row[~has_short]
            mix[~has_long, 0] = row[~has_long]
            both = has_short & has_long
            mix[both, side] = row[both]
        else:
            mix = ipf(table, row, np.array([1.0 - q, q]))
    shares = {}
    for i, c in enumerate(cats):
        for j, is_long in enumerate((False, True)):
            if mix[i, j] > 0:
                shares[(c, is_long)] = float(mix[i, j])
    return MixturePlan(
        shares=shares,
        category_targets=targets,
        long_target=long_share,
        long_applicable=bool(applicable),
        long_planned=q if long_share is not None else None,
        long_range=(lo, hi),
        category_planned=planned,
        notes=notes,
    )


def choose(tokens: np.ndarray, target: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Whole sequences (indices, copy numbers) whose tokens sum close to ``target``: every
    sequence ``floor(target / total)`` times, then a seeded subset for the remainder."""
    total = int(tokens.sum())
    if total <= 0 or target <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    repeats = int(target // total)
    idx = [np.arange(tokens.size)] * repeats
    copies = [np.full(tokens.size, k) for k in range(repeats)]
    left = target - repeats * total
    take = []
    for i in rng.permutation(tokens.size):
        if tokens[i] <= left:
            take.append(i)
            left -= tokens[i]
    rest = np.setdiff1d(np.arange(tokens.size), np.asarray(take, dtype=np.int64))
    if rest.size:
        smallest = rest[np.argmin(tokens[rest])]
        if tokens[smallest] - left < left:  # overshooting by less than we fall short
            take.append(int(smallest))
    idx.append(np.asarray(take, dtype=np.int64))
    copies.append(np.full(len(take), repeats))
    return np.concatenate(idx).astype(np.int64), np.concatenate(copies).astype(np.int64)


def stage_rng(seed: int, stage: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(stage.encode())])


def available_tokens(sequences: pa.Table) -> dict[Stratum, int]:
    out: dict[Stratum, int] = {}
    for c, is_long, n in zip(sequences.column("category").to_pylist(), sequences.column("long").to_pylist(), sequences.column("n_tokens").to_pylist()):
        out[(c, is_long)] = out.get((c, is_long), 0) + int(n)
    return out


@dataclass(frozen=True)
class Mixture:
    table: pa.Table  # MIXTURE_SCHEMA rows, shuffled
    plan: MixturePlan
    budget: int  # target tokens
    stratum_rows: list[dict]  # per stratum: planned vs chosen tokens


def build_mixture(
    sequences: pa.Table,
    stage: str,
    *,
    category_shares: Mapping[str, float] = DEFAULT_CATEGORY_SHARES,
    long_share: float | None = DEFAULT_LONG_SHARE,
    total_tokens: int | None = None,
    seed: int = 0,
) -> Mixture:
    """The mixed training set of one stage from its packed sequences (deterministic)."""
    available = available_tokens(sequences)
    plan = plan_mixture(available, category_shares, long_share)
    budget = int(total_tokens) if total_tokens else sum(available.values())
    rng = stage_rng(seed, stage)
    cats = np.array(sequences.column("category").to_pylist(), dtype=object)
    longs = sequences.column("long").to_numpy(zero_copy_only=False)
    n_tokens = sequences.column("n_tokens").to_numpy(zero_copy_only=False).astype(np.int64)
    picked, copies, strata_rows = [], [], []
    for stratum in stratum_order(available):
        rows = np.flatnonzero((cats == stratum[0]) & (longs == stratum[1]))
        target = plan.shares.get(stratum, 0.0) * budget
        idx, cp = choose(n_tokens[rows], target, rng)
        picked.append(rows[idx])
        copies.append(cp)
        strata_rows.append(
            {
                "stratum": stratum_name(*stratum),
                "available_tokens": available[stratum],
                "planned_share": round(plan.shares.get(stratum, 0.0), 4),
                "target_tokens": int(round(target)),
                "chosen_tokens": int(n_tokens[rows[idx]].sum()),
                "sequences": int(idx.size),
                "max_copy": int(cp.max()) if cp.size else 0,
                "max_sequence_tokens": int(n_tokens[rows].max()),
            }
        )
    picked_all = np.concatenate(picked) if picked else np.zeros(0, np.int64)
    copies_all = np.concatenate(copies) if copies else np.zeros(0, np.int64)
    order = rng.permutation(picked_all.size)
    table = sequences.take(pa.array(picked_all[order])).append_column("copy", pa.array(copies_all[order]))
    table = table.cast(MIXTURE_SCHEMA.with_metadata(sequences.schema.metadata))
    return Mixture(table, plan, budget, strata_rows)


# --- achieved shares and the tolerance check ---------------------------------------------


def max_sequence_tokens(sequences: pa.Table) -> dict[str, int]:
    """Largest sequence per category and overall (key ``long``): how coarse whole-sequence
    choices are, which bounds how close a share can get."""
    out: dict[str, int] = {}
    for c, n in zip(sequences.column("category").to_pylist(), sequences.column("n_tokens").to_pylist()):
        out[c] = max(out.get(c, 0), int(n))
        out["long"] = max(out.get("long", 0), int(n))
    return out


def achieved_shares(table: pa.Table) -> tuple[dict[str, float], float, int]:
    """(category -> token share, long token share, total tokens) of a mixture table."""
    tok = table.column("n_tokens").to_numpy(zero_copy_only=False).astype(np.int64)
    cats = np.array(table.column("category").to_pylist(), dtype=object)
    longs = table.column("long").to_numpy(zero_copy_only=False).astype(bool)
    total = int(tok.sum())
    if total == 0:
        return {}, 0.0, 0
    shares = {str(c): float(tok[cats == c].sum() / total) for c in sorted(set(cats.tolist()))}
    return shares, float(tok[longs].sum() / total), total


@dataclass(frozen=True)
class ShareCheck:
    passed: bool
    severity: str  # "ERROR" (the mixer missed a reachable target) or "WARN" (explained by the data)
    rows: list[dict]
    problems: list[str]


def check_shares(table: pa.Table, plan: MixturePlan, tolerance: float, max_sequence_tokens: Mapping[str, int] | None = None) -> ShareCheck:
    """Each achieved share within ``tolerance`` (absolute) of its configured target.

    A miss is explained (WARN) when the data cannot reach the target (the plan clamped or
    renormalised it) or when the stage has too few sequences: one sequence of that category
    carries more than ``tolerance`` of the mix, so whole sequences cannot land closer.
    Any other miss is an ERROR."""
    if not 0.0 <= tolerance < 1.0:
        raise ValueError(f"tolerance must be in [0, 1), got {tolerance}")
    shares, long_got, total = achieved_shares(table)
    max_seq = dict(max_sequence_tokens or {})
    rows, problems, unexplained = [], [], False
    entries = [(c, plan.category_targets[c], plan.category_planned.get(c, 0.0), shares.get(c, 0.0), max_seq.get(c, 0)) for c in plan.category_targets]
    for c in sorted(set(shares) - set(plan.category_targets)):
        entries.append((c, 0.0, 0.0, shares[c], max_seq.get(c, 0)))
    if plan.long_target is not None:
        entries.append(("long", plan.long_target, plan.long_planned, long_got, max_seq.get("long", 0)))
    for name, target, planned, got, biggest in entries:
        if name == "long" and not plan.long_applicable:
            rows.append({"share": name, "target": target, "planned": "n/a", "achieved": round(got, 4), "status": "not applicable"})
            continue
        drift = abs(got - target)
        status = "ok"
        if drift > tolerance:
            data_gap = abs(planned - target) > 1e-9
            coarse = total > 0 and biggest / total > tolerance
            if data_gap or coarse:
                status = "data cannot reach target" if data_gap else "too few sequences"
            else:
                status = "drift"
                unexplained = True
            problems.append(f"{name}: achieved {got:.1%} vs target {target:.1%} ({status})")
        rows.append({"share": name, "target": round(target, 4), "planned": round(planned, 4), "achieved": round(got, 4), "drift": round(drift, 4), "status": status})
    return ShareCheck(not problems, "ERROR" if unexplained else "WARN", rows, problems)
