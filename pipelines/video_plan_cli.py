"""``giraffe video-plan PATH``: the frame plan of one video as JSON, before any training run.

Prints what the video_frames stage would do with a file (fps, frame count, indices, timestamps,
per-frame sizes, grid rows, visual tokens) from its metadata only: decord's, or ``ffmpeg -i``
where decord cannot open it. An unreadable file exits with status 2 and one line saying why.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

from assets.video.grid import VIDEO_MAX_PIXELS, HybridConfig, PlanError
from assets.video.plan import VideoSamplingConfig, plan_video
from pipelines.cli_args import non_negative_int, positive_float, positive_int


def cmd_video_plan(args: argparse.Namespace) -> int:
    from assets.video.decode import DecodeError, VideoMeta, open_reader, probe, probe_ffmpeg
    if args.hybrid:
        try:
            hybrid = HybridConfig.parse(args.hybrid, min_frames=args.hybrid_min_frames)
        except ValueError as exc:
            print(f"giraffe video-plan: {exc}", file=sys.stderr)
            return 2
    else:
        hybrid = None
    cfg = VideoSamplingConfig(fps=args.fps, max_pixels=args.max_pixels, hybrid=hybrid)
    try:
        if not os.path.isfile(args.path):
            raise DecodeError("missing_media", f"file not found: {args.path}")
        if os.path.getsize(args.path) == 0:
            raise DecodeError("empty_file", "file is 0 bytes")
        try:
            with _quiet_stderr():  # decord's C++ logs its own lines; the reason line is ours
                meta: VideoMeta = probe(args.path, open_reader(args.path))
        except DecodeError:
            meta = probe_ffmpeg(args.path)
        plan = plan_video(meta.total_frames, meta.fps, meta.height, meta.width, cfg)
    except (DecodeError, PlanError) as exc:
        print(f"giraffe video-plan: {args.path}: {exc.reason}: {exc.detail}", file=sys.stderr)
        return 2
    print(json.dumps(plan.to_json(), indent=None if args.compact else 2))
    return 0


@contextlib.contextmanager
def _quiet_stderr():
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def add_video_plan_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "video-plan",
        help="print the 2 fps frame plan of a video as JSON",
        description="What the video_frames stage would do with one file, from its metadata only: fps, frame "
        "count, sampled indices and timestamps, per-frame sizes, grid rows and visual tokens. An unreadable "
        "file is one line on stderr and exit status 2.",
        epilog="examples:\n"
        "  giraffe video-plan clip.mp4\n"
        "  giraffe video-plan clip.mp4 --fps 1 --max-pixels 50176 --compact\n"
        "  giraffe video-plan long.mp4 --hybrid 4,240,3 --hybrid-min-frames 512",
    )
    p.add_argument("path", help="video file")
    p.add_argument("--fps", type=positive_float, default=2.0, help="target sampling rate, frames per second")
    p.add_argument("--max-pixels", type=positive_int, default=VIDEO_MAX_PIXELS, help="per-frame pixel cap")
    p.add_argument("--hybrid", metavar="L,m,s", help="hybrid resolution, e.g. 4,240,3 (default off)")
    p.add_argument("--hybrid-min-frames", type=non_negative_int, default=0, help="use hybrid only above this many frames")
    p.add_argument("--compact", action="store_true", help="one-line JSON")
    p.set_defaults(func=cmd_video_plan)
    return p
