"""Benchmark: 2 fps sampling throughput, our decode path vs the qwen-vl-utils decord path.

    PYTHONPATH=. python benchmarks/video_sampling.py [--seconds 30 120 600] [--repeats 3] [--workers 2]

Videos (H.264, 30 fps, 640x360, GOP 30) are generated into a temp dir with the project's
``encode_video`` and deleted afterwards. For each video every path samples the same plan
(frame indices and smart_resize size from ``plan_video``):

* baseline: ``decord.VideoReader(path)`` (decord's default threads, as qwen-vl-utils opens
  it), ``get_batch(indices)``, then a PIL bicubic resize per frame;
* baseline, 1 thread: the same with ``num_threads=1``;
* decord path: ``read_frames_parallel`` with ``--workers`` readers (our decord reader: one
  forward pass with skip/seek, resize overlapped in a thread, the video cut into spans of
  about equal length, one reader each; the fallback of the default path);
* ours: ``sample_video(path, decoder="auto")`` end to end, as the stage calls it: open and
  probe with decord, plan, the ffmpeg select pipe (``assets.video.pipe``) with the PIL resize
  in our process, and the check of the first and last frame against decord. Probe and check
  are extra work the baseline does not do; they are counted.

It reports sampled frames per second (best of ``--repeats``), the ratios, and checks that all
paths return identical frames. Runs are interleaved (each path once per round) so that
background load on a shared machine hits all alike. ``cpu`` columns: process CPU seconds
(all threads) of the best run, to tell work saved from work spread over both cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from assets.sources.embedded.media import encode_video
from assets.video.decode import baseline_frames, open_reader, probe, read_frames_parallel, sample_video
from assets.video.plan import VideoSamplingConfig, plan_video


def cpu_seconds() -> float:
    """User + system CPU of this process and of its waited-for children (ffmpeg)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def best_interleaved(fns, repeats: int) -> tuple[list[float], list[float], list[object]]:
    """Best wall time of each function (and the CPU seconds of that run), runs interleaved so
    background load hits all alike."""
    times: list[list[tuple[float, float]]] = [[] for _ in fns]
    outs: list[object] = [None] * len(fns)
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            t, c = time.perf_counter(), cpu_seconds()
            outs[k] = fn()
            times[k].append((time.perf_counter() - t, cpu_seconds() - c))
    best = [min(t) for t in times]
    return [b[0] for b in best], [b[1] for b in best], outs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, nargs="+", default=[30, 120, 600])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    cfg = VideoSamplingConfig(hybrid=None)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, load average at start {os.getloadavg()[0]:.2f}")
    print("| video | frames sampled | size | baseline s (cpu) | baseline 1-thread s (cpu) | "
          f"decord path {args.workers} readers s (cpu) | ours s (cpu) | decoder | baseline fps | ours fps | ratio | "
          "ratio vs 1-thread | identical | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in args.seconds:
            path = encode_video(Path(tmp) / f"v{seconds:g}.mp4", seconds=seconds, fps=30, size=(640, 360))
            meta = probe(path, open_reader(path))
            plan = plan_video(meta.total_frames, meta.fps, meta.height, meta.width, cfg)
            n = len(plan.indices)
            best, cpu, outs = best_interleaved(
                [lambda: baseline_frames(path, plan.indices, plan.sizes),
                 lambda: baseline_frames(path, plan.indices, plan.sizes, num_threads=1),
                 lambda: read_frames_parallel(path, plan.indices, plan.sizes, workers=args.workers),
                 lambda: sample_video(path, cfg, workers=args.workers)],
                args.repeats,
            )
            ours = outs[3]
            assert ours.plan.indices == plan.indices and ours.plan.sizes == plan.sizes
            ref = outs[0]
            same = all(len(o) == len(ref) and all(np.array_equal(a, b) for a, b in zip(ref, o))
                       for o in (outs[1], outs[2], ours.frames))
            t_base, t_base1, t_decord, t_ours = best
            print(f"| {seconds:g} s | {n} | {plan.sizes[0][1]}x{plan.sizes[0][0]} | {t_base:.2f} ({cpu[0]:.2f}) | "
                  f"{t_base1:.2f} ({cpu[1]:.2f}) | {t_decord:.2f} ({cpu[2]:.2f}) | {t_ours:.2f} ({cpu[3]:.2f}) | "
                  f"{ours.decoder} | {n / t_base:.1f} | {n / t_ours:.1f} | {t_base / t_ours:.2f}x | "
                  f"{t_base1 / t_ours:.2f}x | {same} | {os.getloadavg()[0]:.1f} |", flush=True)
            path.unlink()


if __name__ == "__main__":
    main()
