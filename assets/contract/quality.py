"""The mass-rejection guard shared by every stage that quarantines.

Quarantining a bad record is right; quarantining most of a source for one reason is a bug
upstream (a JSON-quoted path column, a media layout that matches nothing, a decoder that
cannot open any video) that would otherwise pass with green checks. So a stage fails its
``no_mass_rejection`` check when one reason takes more than ``max_share`` of a source.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

DEFAULT_MAX_REASON_SHARE = 0.5


@dataclass(frozen=True)
class MassRejection:
    source: str
    reason: str
    lost: int
    total: int

    @property
    def share(self) -> float:
        return self.lost / self.total if self.total else 0.0

    def describe(self) -> str:
        return f"{self.source}: {self.lost} of {self.total} ({self.share:.0%}) lost to {self.reason}"


def mass_rejections(
    lost: Mapping[tuple[str, str], int], totals: Mapping[str, int], max_share: float = DEFAULT_MAX_REASON_SHARE
) -> list[MassRejection]:
    """Every (source, reason) whose count of lost rows is over ``max_share`` of the source's
    ``totals``; ``lost`` maps (source, reason) -> rows lost to it."""
    if not 0.0 <= max_share <= 1.0:
        raise ValueError(f"max_share must be in [0, 1], got {max_share}")
    out = [
        MassRejection(source, reason, n, totals.get(source, 0))
        for (source, reason), n in sorted(lost.items())
        if totals.get(source, 0) and n / totals[source] > max_share
    ]
    return sorted(out, key=lambda m: -m.share)


def count_lost(rows: Iterable[Mapping], raw_rows: bool = True) -> dict[tuple[str, str], int]:
    """(source, reason) -> what was lost, from rejected-table rows: raw rows (each rejection's
    ``source_rows``, at least 1: an undecodable record has none) or, with ``raw_rows=False``,
    one per rejection (samples)."""
    out: dict[tuple[str, str], int] = {}
    for r in rows:
        key = (r["source"], r["reason"])
        out[key] = out.get(key, 0) + (max(len(r.get("source_rows") or []), 1) if raw_rows else 1)
    return out
