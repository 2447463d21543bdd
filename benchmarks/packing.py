"""Benchmark: best-fit decreasing packing (assets.packing.kernel) against the usual baselines.

    PYTHONPATH=. python benchmarks/packing.py [--sizes 200000 1000000 10000000]
        [--capacities 8192 32768 65536 131072] [--greedy-max 1000000] [--speedup-at 2000000]

Lengths are ETVLM-shaped (``etvlm_lengths``): a sample is long text, short image,
interleave or video with equal probability, its length log-uniform in the category's range
(long text 10K-100K, short image 0.3K-3K, interleave 1K-10K, video 2K-120K tokens), seeded.
Every algorithm gets the same samples that fit the capacity (longer ones are left out by all
of them, none is cut). Baselines, run in the same session:

* greedy: the greedy knapsack LLaMA-Factory uses for packing (sort ascending, then fill one
  sequence at a time with the largest remaining length that fits, found by bisect and removed
  with ``list.pop``), on the whole input ("global") and per 1,000-row batch as its
  ``datasets.map`` preprocessing applies it ("per 1000");
* next-fit in input order (close the sequence when the next sample does not fit).

Each (algorithm, size, capacity) runs in its own subprocess: seconds is the wall time of the
packing call (input conversion included: the greedy works on a Python list, ours on an int64
array), memory is the process's peak RSS above its RSS just before the call.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RANGES = {  # tokens per sample, log-uniform within the range
    "long_text": (10_000, 100_000),
    "short_image": (300, 3_000),
    "interleave": (1_000, 10_000),
    "video": (2_000, 120_000),
}


def etvlm_lengths(n: int, seed: int = 0) -> np.ndarray:
    """n ETVLM-shaped sample lengths (int64), categories equally likely."""
    rng = np.random.default_rng(seed)
    cat = rng.integers(0, len(RANGES), n)
    lo = np.array([np.log(r[0]) for r in RANGES.values()])
    hi = np.array([np.log(r[1]) for r in RANGES.values()])
    u = rng.random(n)
    return np.rint(np.exp(lo[cat] + u * (hi[cat] - lo[cat]))).astype(np.int64)


def greedy_knapsack(lengths: list[int], capacity: int) -> list[list[int]]:
    """LLaMA-Factory's packing rule: sort, then fill one sequence at a time with the largest
    remaining length that fits (bisect), removing it from the sorted list (quadratic)."""
    rest = sorted(lengths)
    bins: list[list[int]] = []
    while rest:
        room, current = capacity, []
        while True:
            k = bisect.bisect_right(rest, room) - 1
            if k < 0:
                break
            room -= rest[k]
            current.append(rest.pop(k))
        bins.append(current)
    return bins


def greedy_batched(lengths: list[int], capacity: int, batch: int = 1000) -> int:
    """The greedy applied per ``batch`` consecutive rows; returns the number of sequences."""
    return sum(len(greedy_knapsack(lengths[i : i + batch], capacity)) for i in range(0, len(lengths), batch))


def next_fit(lengths: list[int], capacity: int) -> int:
    """Samples in input order; a new sequence when the next one does not fit."""
    bins, room = 0, 0
    for s in lengths:
        if s > room:
            bins += 1
            room = capacity
        room -= s
    return bins


def run_one(algo: str, lengths: np.ndarray, capacity: int) -> int:
    """Number of sequences ``algo`` uses for ``lengths`` (all <= capacity)."""
    if algo == "ours":
        from assets.packing.kernel import pack

        return pack(lengths, capacity).n_bins
    if algo == "ours_python":
        from assets.packing.kernel import pack

        return pack(lengths, capacity, use_numba=False).n_bins
    items = lengths.tolist()
    if algo == "greedy":
        return len(greedy_knapsack(items, capacity))
    if algo == "greedy_1000":
        return greedy_batched(items, capacity)
    if algo == "next_fit":
        return next_fit(items, capacity)
    raise ValueError(algo)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(algo: str, path: str, capacity: int) -> None:
    lengths = np.load(path)
    lengths = lengths[lengths <= capacity]
    if algo == "ours":  # compile (or load the cached kernels) outside the timed call
        from assets.packing.kernel import pack

        pack(np.array([1, 2]), 4)
    before = _rss()
    t = time.perf_counter()
    bins = run_one(algo, lengths, capacity)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tokens = int(lengths.sum())
    print(json.dumps({"bins": bins, "tokens": tokens, "n": int(lengths.size), "seconds": seconds,
                      "peak_mb": max(0, peak - before) / 2**20}))


def measure(algo: str, path: Path, capacity: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    out = subprocess.run([sys.executable, __file__, "--worker", algo, str(path), str(capacity)],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[200_000, 1_000_000, 10_000_000])
    ap.add_argument("--capacities", type=int, nargs="+", default=[8192, 32768, 65536, 131072])
    ap.add_argument("--greedy-max", type=int, default=1_000_000, help="skip global greedy above this size")
    ap.add_argument("--speedup-at", type=int, default=2_000_000, help="size of the ours-vs-greedy timing (0: skip)")
    ap.add_argument("--speedup-capacity", type=int, default=32768)
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], int(args.worker[2]))
        return
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}")
    print("| samples | capacity | algorithm | packed | sequences | lower bound | above bound | fill | seconds | peak MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            path = Path(tmp) / f"lengths_{n}.npy"
            np.save(path, etvlm_lengths(n))
            for cap in args.capacities:
                algos = ["ours", "greedy", "greedy_1000", "next_fit"]
                if n > args.greedy_max:
                    algos.remove("greedy")
                for algo in algos:
                    r = measure(algo, path, cap)
                    bound = -(-r["tokens"] // cap)
                    print(f"| {n:,} | {cap:,} | {algo} | {r['n']:,} | {r['bins']:,} | {bound:,} | "
                          f"{100 * (r['bins'] - bound) / bound:.3f}% | {r['tokens'] / (r['bins'] * cap):.5f} | "
                          f"{r['seconds']:.2f} | {r['peak_mb']:.0f} |", flush=True)
                if n > args.greedy_max:
                    print(f"| {n:,} | {cap:,} | greedy | skipped: quadratic (list.pop), see the 1M rows |  |  |  |  |  |  |", flush=True)
            path.unlink()
        if args.speedup_at:
            n, cap = args.speedup_at, args.speedup_capacity
            path = Path(tmp) / f"lengths_{n}.npy"
            np.save(path, etvlm_lengths(n))
            ours, greedy = measure("ours", path, cap), measure("greedy", path, cap)
            print(f"\nspeed at {n:,} samples, capacity {cap:,}: ours {ours['seconds']:.2f} s "
                  f"({ours['bins']:,} sequences), global greedy {greedy['seconds']:.2f} s "
                  f"({greedy['bins']:,} sequences): {greedy['seconds'] / ours['seconds']:.0f}x faster")


if __name__ == "__main__":
    main()
