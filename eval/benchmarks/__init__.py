"""The benchmarks: one module each, carrying its own loader, embedded generator, scoring and
leaderboard columns (see ``base.Benchmark``).

May import ``eval.formats``, ``eval.embedded``, ``eval.items``, ``eval.scoring`` and
``assets/contract``; nothing here imports the leaderboard, the runner or Dagster.

To add a benchmark: add a module here that defines ``BENCHMARK`` (a ``Benchmark`` subclass
instance), plus its test. The registry finds it; its ``benchmark/<name>`` and ``eval/<name>``
assets, its leaderboard columns and plots follow.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Sequence
from typing import Any

from eval.benchmarks.base import Benchmark, Column
from eval.scoring import EFFECTIVE_THRESHOLD, Row


def _discover() -> tuple[Benchmark, ...]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        bench = getattr(module, "BENCHMARK", None)
        if not isinstance(bench, Benchmark):
            raise TypeError(f"{module.__name__} defines no BENCHMARK (a eval.benchmarks.base.Benchmark)")
        found.append(bench)
    names = [b.name for b in found]
    if len(set(names)) != len(names):
        raise ValueError(f"two benchmark modules share a name: {sorted(names)}")
    return tuple(sorted(found, key=lambda b: (b.order, b.name)))


BENCHMARKS: tuple[Benchmark, ...] = _discover()
BY_NAME = {b.name: b for b in BENCHMARKS}


def get_benchmark(name: str) -> Benchmark:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown benchmark {name!r}; known: {sorted(BY_NAME)}") from None


def summarize(name: str, rows: Sequence[Row], threshold: float = EFFECTIVE_THRESHOLD) -> dict[str, Any]:
    """The named benchmark's summary of prediction rows."""
    return get_benchmark(name).summarize(rows, threshold)


__all__ = ["BENCHMARKS", "BY_NAME", "Benchmark", "Column", "get_benchmark", "summarize"]
