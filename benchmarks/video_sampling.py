"""Benchmark: 2 fps sampling throughput, our decode path vs the qwen-vl-utils decord path.

    PYTHONPATH=. python benchmarks/video_sampling.py [--seconds 30 120 600] [--repeats 3]

Videos (H.264, 30 fps, 640x360, GOP 30) are generated into a temp dir with the project's
``encode_video`` and deleted afterwards. For each video both paths sample the same plan
(frame indices and smart_resize size from ``plan_video``):

* baseline: ``VideoReader.get_batch(indices)`` then a PIL bicubic resize per frame;
* ours: ``assets.video_decode.read_frames`` (one forward pass with skip/seek, resize in a
  worker thread overlapping the decode).

It reports sampled frames per second (best of ``--repeats``), the ratio, and checks that both
return identical frames. Runs are interleaved (baseline, ours, baseline, ...) so that
background load on a shared machine hits both alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from assets.embedded.media import encode_video
from assets.video_decode import baseline_frames, open_reader, probe, read_frames
from assets.video_plan import VideoSamplingConfig, plan_video


def best_interleaved(fns, repeats: int) -> list[tuple[float, object]]:
    """Best time of each function, runs interleaved so background load hits both alike."""
    times: list[list[float]] = [[] for _ in fns]
    outs: list[object] = [None] * len(fns)
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            t = time.perf_counter()
            outs[k] = fn()
            times[k].append(time.perf_counter() - t)
    return [(min(t), o) for t, o in zip(times, outs)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, nargs="+", default=[30, 120, 600])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cfg = VideoSamplingConfig(hybrid=None)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| video | frames decoded | frames sampled | size | baseline s | ours s | baseline fps | ours fps | ratio | identical |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in args.seconds:
            path = encode_video(Path(tmp) / f"v{seconds:g}.mp4", seconds=seconds, fps=30, size=(640, 360))
            reader = open_reader(path)
            meta = probe(path, reader)
            plan = plan_video(meta.total_frames, meta.fps, meta.height, meta.width, cfg)
            n = len(plan.indices)
            (t_base, ref), (t_ours, got) = best_interleaved(
                [lambda: baseline_frames(path, plan.indices, plan.sizes),
                 lambda: read_frames(open_reader(path), plan.indices, plan.sizes)],
                args.repeats,
            )
            same = len(ref) == len(got) and all(np.array_equal(a, b) for a, b in zip(ref, got))
            print(f"| {seconds:g} s | {meta.total_frames} | {n} | {plan.sizes[0][1]}x{plan.sizes[0][0]} | {t_base:.2f} | "
                  f"{t_ours:.2f} | {n / t_base:.1f} | {n / t_ours:.1f} | {t_base / t_ours:.2f}x | {same} |", flush=True)
            path.unlink()


if __name__ == "__main__":
    main()
