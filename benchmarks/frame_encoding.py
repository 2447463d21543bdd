"""Benchmark: size and encode/decode time of lossless frame encodings for the video_frames shards.

    PYTHONPATH=. python benchmarks/frame_encoding.py [--frames 30] [--repeats 3]

Three generated 640x360 clips (the bundled ffmpeg's lavfi sources, deleted afterwards): the
sampling benchmark's ``testsrc`` pattern (flat colours, compresses unusually well), a
``mandelbrot`` zoom (smooth gradients and fine detail) and ``testsrc2`` with temporal noise and
a slight blur (sensor-noise-like, the hardest case for lossless coders). Frames are sampled and
resized exactly as the stage does (644x364), then encoded with each option; every option is
checked to decode back to the identical array. Prints a markdown table per clip: mean bytes per
frame, ratio to raw RGB, best-of-``--repeats`` encode and decode ms per frame.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from assets.video.decode import baseline_frames, ffmpeg_exe

CLIPS = {
    "testsrc": "testsrc=size=640x360:rate=30",
    "mandelbrot": "mandelbrot=size=640x360:rate=30",
    "noisy testsrc2": "testsrc2=size=640x360:rate=30,noise=alls=12:allf=t,gblur=sigma=0.8",
}
OPTIONS = [
    ("PNG level 0", "PNG", {"compress_level": 0}),
    ("PNG level 1", "PNG", {"compress_level": 1}),
    ("PNG level 3", "PNG", {"compress_level": 3}),
    ("PNG level 6 (Pillow default)", "PNG", {"compress_level": 6}),
    ("PNG level 9", "PNG", {"compress_level": 9}),
    ("PNG level 1, zlib RLE (stage default)", "PNG", {"compress_level": 1, "compress_type": 3}),
    ("PNG level 3, zlib RLE", "PNG", {"compress_level": 3, "compress_type": 3}),
    ("WebP lossless, method 0", "WEBP", {"lossless": True, "quality": 0, "method": 0}),
    ("WebP lossless, method 4", "WEBP", {"lossless": True, "quality": 100, "method": 4}),
]


def encode(frame: np.ndarray, fmt: str, kw: dict) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format=fmt, **kw)
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"{os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, source in CLIPS.items():
            path = Path(tmp) / "clip.mp4"
            src, _, filters = source.partition(",")
            cmd = [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", src, "-t", "20", *(["-vf", filters] if filters else []),
                   "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p", str(path)]
            subprocess.run(cmd, check=True)
            idx = np.linspace(0, 599, args.frames).round().astype(int).tolist()
            frames = baseline_frames(path, idx, [(364, 644)] * len(idx))
            raw = sum(f.nbytes for f in frames)
            print(f"\n{name}: {len(frames)} frames of 644x364, raw {raw / len(frames) / 1e3:.0f} kB/frame\n")
            print("| encoding | kB/frame | of raw | encode ms/frame | decode ms/frame | lossless |")
            print("|---|---|---|---|---|---|")
            for label, fmt, kw in OPTIONS:
                t_enc, t_dec = [], []
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    blobs = [encode(f, fmt, kw) for f in frames]
                    t_enc.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    back = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs]
                    t_dec.append(time.perf_counter() - t)
                size = sum(map(len, blobs)) / len(blobs)
                same = all(np.array_equal(a, b) for a, b in zip(frames, back))
                print(f"| {label} | {size / 1e3:.1f} | {size * len(frames) / raw:.3f} | {min(t_enc) / len(frames) * 1e3:.1f} | "
                      f"{min(t_dec) / len(frames) * 1e3:.1f} | {same} |", flush=True)


if __name__ == "__main__":
    main()
