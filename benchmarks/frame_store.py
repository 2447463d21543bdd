"""Benchmark: bytes per sampled second of each video_frames store, and the training-time cost.

    PYTHONPATH=. python benchmarks/frame_store.py [--seconds 10] [--resolutions 360,720,1080]

Clips are generated, encoded like a camera upload (H.264 CRF 23, preset medium, B-frames), and
deleted afterwards: a textured image (multi-octave colour noise plus hard-edged shapes, so
there is detail at every scale) panned and zoomed slowly, with moving discs over it and fresh
sensor noise in every frame. That makes the codec work as on natural video (``testsrc``'s flat
colours compress 5-7x better and flatter every lossless coder). Per resolution:

* the source mp4's bytes per second;
* every frame store the stage offers (``VideoFramesConfig.frame_store``), written by the stage's
  own code (``sample_to_shard``): its shard bytes per sampled second (2 fps) and per video;
* reference encodings not offered, measured on the same resized frames: PNG at zlib level 6 and
  9, WebP lossless method 4, and one lossless libx264rgb ``-qp 0`` / FFV1 stream per video;
* training-time cost per video: reading the shard back to RGB arrays (``load_frames``), for the
  plan store that is decoding the planned frames from the source (content hash check included),
  in wall and CPU seconds.

Every store is checked to give back frames identical to the PNG store's.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from assets.video.decode import ffmpeg_exe
from assets.video.frames import (
    FRAME_STORES,
    load_frames,
    sample_to_shard,
    store_encoder,
)
from assets.video.plan import VideoSamplingConfig

SIZES = {360: (640, 360), 720: (1280, 720), 1080: (1920, 1080)}


def texture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A colour texture twice the frame size: octaves of smoothed noise plus sharp shapes."""
    rng = np.random.default_rng(seed)
    w, h = 2 * width, 2 * height
    img = np.zeros((h, w, 3), np.float32)
    for octave, weight in ((8, 0.45), (32, 0.25), (128, 0.18), (512, 0.12)):
        small = rng.random((max(2, h * octave // w), octave, 3), dtype=np.float32)
        up = Image.fromarray((small * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
        img += weight * np.asarray(up, np.float32)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    from PIL import ImageDraw

    draw = ImageDraw.Draw(out)
    for _ in range(60):
        x, y = rng.integers(0, w), rng.integers(0, h)
        s = int(rng.integers(8, max(9, w // 12)))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.rectangle if rng.random() < 0.5 else draw.ellipse)([x, y, x + s, y + s // 2], fill=color)
    return np.asarray(out)


def make_clip(path: Path, width: int, height: int, seconds: float, fps: int = 30, seed: int = 0) -> None:
    """Pan + slow zoom over the texture, moving discs, per-frame sensor noise; x264 CRF 23."""
    tex = texture(width, height, seed)
    rng = np.random.default_rng(seed + 1)
    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
           "-r", str(fps), "-i", "pipe:0", "-c:v", "libx264", "-preset", "medium", "-crf", "23", "-bf", "3",
           "-pix_fmt", "yuv420p", str(path)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    n = int(seconds * fps)
    yy, xx = np.mgrid[0:height, 0:width]
    for k in range(n):
        t = k / n
        zoom = 1.0 - 0.3 * t
        cw, ch = int(width * 2 * zoom * 0.5 + width * 0.5 * (1 - zoom)), int(height * 2 * zoom * 0.5 + height * 0.5 * (1 - zoom))
        x0 = int((tex.shape[1] - cw) * t)
        y0 = int((tex.shape[0] - ch) * (0.5 + 0.4 * np.sin(2 * np.pi * t)))
        crop = Image.fromarray(tex[y0:y0 + ch, x0:x0 + cw]).resize((width, height), Image.BILINEAR)
        frame = np.asarray(crop, np.int16).copy()
        for d in range(3):
            cx = width * (0.2 + 0.6 * ((t * (d + 1)) % 1.0))
            cy = height * (0.3 + 0.2 * d)
            r = height / (8 + 2 * d)
            frame[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = (60 * d + 40, 200 - 50 * d, 90 + 70 * d)
        frame += rng.normal(0, 4, frame.shape).astype(np.int16)
        proc.stdin.write(np.clip(frame, 0, 255).astype(np.uint8).tobytes())
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError("ffmpeg failed to encode the clip")


def cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def stream_bytes(frames: list[np.ndarray], codec: list[str], tmp: Path) -> tuple[int, bool]:
    """One lossless video stream of the sampled frames (all one size); lossless checked."""
    h, w = frames[0].shape[:2]
    out = tmp / "stream.mkv"
    enc = [ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", "2",
           "-i", "pipe:0", *codec, str(out)]
    subprocess.run(enc, input=b"".join(f.tobytes() for f in frames), check=True)
    dec = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(out), "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
                         capture_output=True, check=True).stdout
    back = np.frombuffer(dec, np.uint8).reshape(-1, h, w, 3)
    return out.stat().st_size, len(back) == len(frames) and all(np.array_equal(a, b) for a, b in zip(frames, back))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--resolutions", default="360,720,1080")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--skip-reference", action="store_true", help="only the offered stores")
    ap.add_argument("--stage", type=int, default=0,
                    help="instead: run the stage (workers=0, every core) on this many clips per store; print cores used")
    args = ap.parse_args()
    if args.stage:
        return stage_cores(args)
    cfg = VideoSamplingConfig()
    print(f"{os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.2f}, clips of {args.seconds:g} s at 30 fps")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for res in [int(r) for r in args.resolutions.split(",")]:
            width, height = SIZES[res]
            clip = tmp / f"clip{res}.mp4"
            make_clip(clip, width, height, args.seconds, seed=res)
            src = clip.stat().st_size
            print(f"\n### {res}p ({width}x{height}), source mp4 {src / args.seconds / 1e3:.0f} kB/s\n", flush=True)
            print("| store | kB per sampled s | kB per video | x source | write s | training-time read s (cpu) | frames |")
            print("|---|---|---|---|---|---|---|")
            reference = None
            for store in FRAME_STORES:
                out = tmp / f"frames-{store}-{res}"
                out.mkdir()
                t = time.perf_counter()
                row = sample_to_shard(str(clip), cfg, str(out), store_encoder(store), decode_workers=None, store=store)
                write = time.perf_counter() - t
                shard = Path(row["frames_file"])
                size = shard.stat().st_size
                best = None
                for _ in range(args.repeats):
                    t, c = time.perf_counter(), cpu()
                    _, frames = load_frames(shard)
                    took = (time.perf_counter() - t, cpu() - c)
                    best = took if best is None or took[0] < best[0] else best
                if reference is None:
                    reference = frames
                same = len(frames) == len(reference) and all(np.array_equal(a, b) for a, b in zip(frames, reference))
                per_s = size / row["duration"]
                print(f"| {store} | {per_s / 1e3:.1f} | {size / 1e3:.0f} | {size / src:.2f} | {write:.2f} | "
                      f"{best[0]:.2f} ({best[1]:.2f}) | {len(frames)} of {frames[0].shape[1]}x{frames[0].shape[0]}, "
                      f"{'identical' if same else 'DIFFERENT'} |", flush=True)
            duration = row["duration"]
            if args.skip_reference:
                print(f"\nload average after {res}p: {os.getloadavg()[0]:.2f}")
                continue
            for label, fmt, kw in (("PNG zlib level 6 (not offered)", "PNG", {"compress_level": 6}),
                                   ("PNG zlib level 9 (not offered)", "PNG", {"compress_level": 9}),
                                   ("WebP lossless method 4 (not offered)", "WEBP", {"lossless": True, "quality": 100, "method": 4})):
                t = time.perf_counter()
                blobs = []
                for f in reference:
                    buf = io.BytesIO()
                    Image.fromarray(f).save(buf, format=fmt, **kw)
                    blobs.append(buf.getvalue())
                enc = time.perf_counter() - t
                size = sum(map(len, blobs))
                print(f"| {label} | {size / duration / 1e3:.1f} | {size / 1e3:.0f} | {size / src:.2f} | {enc:.2f} (encode only) | | |")
            for label, codec in (("libx264rgb -qp 0, one stream (not offered)", ["-c:v", "libx264rgb", "-qp", "0", "-preset", "medium"]),
                                 ("FFV1, one stream (not offered)", ["-c:v", "ffv1", "-level", "3"])):
                t = time.perf_counter()
                size, lossless = stream_bytes(reference, codec, tmp)
                enc = time.perf_counter() - t
                print(f"| {label} | {size / duration / 1e3:.1f} | {size / 1e3:.0f} | {size / src:.2f} | {enc:.2f} (enc+dec) | | "
                      f"{'lossless' if lossless else 'NOT LOSSLESS'} |", flush=True)
            print(f"\nload average after {res}p: {os.getloadavg()[0]:.2f}")


def stage_cores(args) -> None:
    """The stage itself (``run_video_frames``, default workers = every core) on ``args.stage``
    clips of each resolution: wall, CPU seconds of this process and all its children (pool
    workers and their ffmpeg processes), cores used = CPU / wall."""
    from assets.video.frames import VideoFramesConfig, VideoRef, run_video_frames
    from assets.video.pipe import host_cores

    print(f"{host_cores()} cores, load average at start {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        refs = []
        for res in [int(r) for r in args.resolutions.split(",")]:
            for k in range(args.stage):
                clip = tmp / f"clip{res}-{k}.mp4"
                make_clip(clip, *SIZES[res], args.seconds, seed=100 * res + k)
                refs.append(VideoRef(f"s{res}-{k}", "bench", 0, str(clip), None, None, [k]))
        print("\n| store | videos | frames | wall s | CPU s | cores used | sampled frames/s | load after |")
        print("|---|---|---|---|---|---|---|---|")
        for store in ("png", "plan"):
            cfg = VideoFramesConfig(frame_store=store)
            t, c = time.perf_counter(), cpu()
            result = run_video_frames(refs, tmp / f"out-{store}", cfg)
            wall, used = time.perf_counter() - t, cpu() - c
            frames = sum(v["n_frames"] or 0 for v in result.videos)
            print(f"| {store} | {len(result.videos)} | {frames} | {wall:.1f} | {used:.1f} | {used / wall:.2f} | "
                  f"{frames / wall:.1f} | {os.getloadavg()[0]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
