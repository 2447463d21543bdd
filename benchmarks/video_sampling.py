"""Benchmark: 2 fps sampling of realistic video, the project's sampler against its peers.

    PYTHONPATH=. python benchmarks/video_sampling.py [--clips DIR] [--only 360p:30 720p:120 ...]
        [--repeats 3] [--qwen-vl-utils DIR]

Clips (generated, never committed): a textured scene (sinusoids, blocks with hard edges,
smoothed and fine noise) panning across a 2x larger canvas, a second textured object moving
over it, a slow hue drift and temporal sensor noise (``noise=alls=10:allf=t+u``); x264
``veryfast``, CRF 23, 3 B-frames, default GOP (250), 30 fps. Sizes 640x360, 1280x720 and
1920x1080; by default 30 s at each size and one 600 s 360p clip (``--only 720p:120 1080p:120``
adds 2-minute ones; any size:seconds works). ``--clips DIR`` keeps them for
the next run (they take minutes to encode on 2 cores); otherwise a temp dir is used and deleted.

Every path samples the same plan (``plan_video``: qwen-vl-utils' frame rule and smart_resize,
hybrid off) and returns uint8 (H, W, 3) frames at the planned size:

* ``decord+PIL`` (baseline): ``decord.VideoReader(path)`` with decord's default threads (how
  qwen-vl-utils opens it), ``get_batch(indices)``, PIL bicubic per frame;
* ``decord+torch``: the same with the torch resize: qwen-vl-utils' decord path written out,
  and the pixel reference of every other path ("max diff" columns);
* ``ours``: ``sample_video(path, cfg)`` end to end as the stage and eval call it: decord open
  and probe, plan, the ffmpeg select pipe with the host's cores, the torch resize in a thread
  pool, and the first/last frame check against decord (counted in its time);
* ``ours-pil``: the same with ``resize="pil"`` (its pixels must equal ``decord+PIL``'s): what
  the torch resize costs against PIL;
* ``torchcodec``: ``VideoDecoder(path, seek_mode="exact", num_ffmpeg_threads=cores)``
  ``.get_frames_at(indices)``, then the torch resize per frame (torchcodec 0.13.0 CPU build on
  the system's FFmpeg 5.1 libraries);
* ``PyAV``: ``av.open`` with ``thread_type="AUTO"``, every frame decoded, the sampled ones
  converted with ``to_ndarray("rgb24")``, then the torch resize;
* ``ffmpeg select,scale`` (the limit): the same ffmpeg binary as ours, ``select`` then
  ``scale=w:h:flags=bicubic`` to rgb24 rawvideo, read into numpy: decoding with the resize done
  inside FFmpeg's scaler, no Python resize at all (its pixels differ: swscale's bicubic).
* ``ffmpeg-rgb`` (only with ``--decode-only``): the same ``select`` to rgb24 at the source size,
  no resize: what ours' pipe costs before its resize, to split ours' gap to the limit.

torch runs with one intra-op thread in every path (``sample_video`` sets that itself; a
per-frame resize next to a decoder gains nothing from an OpenMP team and loses to its spinning:
in a trial run with torch's default 2 threads, ``decord+torch`` took 2.3x the wall time of
``decord+PIL`` on 360p). Runs are interleaved (each path once per round, ``--repeats`` rounds)
so that background load on a shared machine hits all alike. Times are the median wall seconds
of a path's runs, with the median of their CPU seconds (this process, all threads, plus
waited-for children such as ffmpeg). With ``--qwen-vl-utils DIR`` (a ``pip install --no-deps --target DIR
qwen-vl-utils==0.0.14 torchvision==0.29.1``), ours is also compared with qwen-vl-utils' own
``fetch_video`` (decord backend) on clips whose float32 video fits in 3 GB.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from assets.video.decode import (
    baseline_frames,
    ffmpeg_exe,
    open_reader,
    probe,
    sample_video,
)
from assets.video.pipe import host_cores, select_expression
from assets.video.plan import VideoSamplingConfig, plan_video
from assets.video.resize import resize_torch

CLIPS = {"360p": (360, 640), "720p": (720, 1280), "1080p": (1080, 1920)}
DEFAULT_RUNS = ["360p:30", "720p:30", "1080p:30", "360p:600"]


# --- realistic clips -------------------------------------------------------------------------

def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A canvas with structure at every scale: sinusoids, hard-edged blocks, blobs, grain."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.zeros((height, width, 3), np.float32)
    for c in range(3):
        for _ in range(6):
            fx, fy = rng.uniform(0.002, 0.05, 2)
            img[..., c] += 25 * np.sin(x * fx + y * fy + rng.uniform(0, 6.3))
    for _ in range(400):
        y0, x0 = rng.integers(0, height), rng.integers(0, width)
        img[y0:y0 + rng.integers(4, height // 8), x0:x0 + rng.integers(4, width // 8)] += rng.uniform(-60, 60, 3)
    blobs = np.clip(rng.normal(0, 30, (height // 4, width // 4, 3)) + 128, 0, 255).astype(np.uint8)
    img += np.asarray(Image.fromarray(blobs).resize((width, height), Image.BICUBIC), np.float32) - 128
    img += rng.normal(0, 12, img.shape)
    return np.clip(img + 128, 0, 255).astype(np.uint8)


def realistic_clip(path: Path, seconds: float, height: int, width: int, fps: int = 30) -> Path:
    """Pan + moving object + hue drift + temporal noise, x264 veryfast CRF 23 with 3 B-frames."""
    from PIL import Image

    tex = path.with_suffix(".texture.png")
    Image.fromarray(texture(2 * height, 2 * width)).save(tex)
    h, w = height, width
    graph = (
        f"[0]loop=loop=-1:size=1,fps={fps},trim=duration={seconds},split[a][b];"
        f"[a]crop={w}:{h}:x='{w // 2}*(1+sin(t*0.37))':y='{h // 2}*(1+sin(t*0.23+1))'[bg];"
        f"[b]crop={w // 3}:{h // 3}:x='{w}*(1+sin(t*0.9))/2':y='{h}*(1+cos(t*0.7))/2',hue=h=90[fg];"
        f"[bg][fg]overlay=x='mod(t*{w // 6},{w})-{w // 6}':y='{h // 3}*(1+sin(t*1.3))',"
        f"hue=h='t*12':s='1+0.3*sin(t)',noise=alls=10:allf=t+u,format=yuv420p[v]"
    )
    part = path.with_suffix(".part.mp4")
    subprocess.run([ffmpeg_exe(), "-y", "-nostdin", "-v", "error", "-i", str(tex), "-filter_complex", graph,
                    "-map", "[v]", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-bf", "3",
                    "-pix_fmt", "yuv420p", str(part)], check=True)
    tex.unlink()
    part.replace(path)
    return path


# --- the paths -------------------------------------------------------------------------------

def torchcodec_frames(path: Path, indices, sizes, threads: int) -> list[np.ndarray]:
    from torchcodec.decoders import VideoDecoder

    dec = VideoDecoder(str(path), seek_mode="exact", num_ffmpeg_threads=threads, dimension_order="NHWC")
    batch = dec.get_frames_at(indices=list(indices)).data.numpy()
    return [resize_torch(f, s) for f, s in zip(batch, sizes)]


def pyav_frames(path: Path, indices, sizes) -> list[np.ndarray]:
    import av

    wanted: dict[int, list[int]] = {}
    for pos, i in enumerate(indices):
        wanted.setdefault(int(i), []).append(pos)
    out: list[np.ndarray | None] = [None] * len(indices)
    last = max(wanted)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for n, frame in enumerate(container.decode(stream)):
            if n in wanted:
                rgb = frame.to_ndarray(format="rgb24")
                for pos in wanted[n]:
                    out[pos] = resize_torch(rgb, sizes[pos])
            if n >= last:
                break
    if any(f is None for f in out):
        raise RuntimeError("PyAV decoded fewer frames than planned")
    return out


def ffmpeg_scale_frames(path: Path, indices, size, threads: int, scale: bool = True) -> list[np.ndarray]:
    """The limit: ffmpeg selects and scales (swscale bicubic) to rgb24; Python only reads.
    ``scale=False`` (``ffmpeg-rgb``, with ``--decode-only``): the sampled frames at the source
    size, the decode, conversion and pipe that ours does before its resize."""
    h, w = size
    unique = sorted({int(i) for i in indices})
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "graph.txt"
        scaler = f",scale={w}:{h}:flags=bicubic" if scale else ""
        script.write_text(f"select='{select_expression(unique)}'{scaler}")
        proc = subprocess.run(
            [ffmpeg_exe(), "-nostdin", "-v", "error", "-threads", str(threads), "-i", str(path), "-map", "0:v:0",
             "-/vf", str(script), "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
            capture_output=True, check=True,
        )
    frames = np.frombuffer(proc.stdout, np.uint8).reshape(-1, h, w, 3)
    by_index = dict(zip(unique, frames))
    return [by_index[int(i)] for i in indices]


def qwen_vl_utils_frames(site: str, path: Path) -> tuple[list[int], np.ndarray]:
    """qwen-vl-utils 0.0.14 ``fetch_video`` (decord backend) from a ``--target`` install.

    torchvision's PyPI wheels are CUDA builds whose C++ ops do not load against a CPU torch;
    its Python resize code needs none of them, but ``import torchvision`` registers fake kernels
    for ``torchvision::nms``/``qnms`` and fails when those ops are not defined, so they are
    declared (never called) first."""
    os.environ["FORCE_QWENVL_VIDEO_READER"] = "decord"
    if site not in sys.path:
        sys.path.insert(0, site)
        import torch

        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        qwen_vl_utils_frames.keep = lib  # the definitions live as long as the library object
    import torch
    from qwen_vl_utils.vision_process import fetch_video

    video, meta = fetch_video({"video": str(path)}, return_video_metadata=True)
    assert torch.equal(video, video.round())  # uint8 values as float, as fetch_video returns them
    return list(meta["frames_indices"]), video.to(torch.uint8).permute(0, 2, 3, 1).numpy()


def contenders(path: Path, idx, sizes, cores: int, native: tuple[int, int]) -> dict:
    """Every path as a zero-argument call on one clip and plan."""
    cfg, pil_cfg = VideoSamplingConfig(hybrid=None), VideoSamplingConfig(hybrid=None, resize="pil")
    return {
        "decord+PIL": lambda: baseline_frames(path, idx, sizes, resize="pil"),
        "decord+torch": lambda: baseline_frames(path, idx, sizes, resize="torch"),
        "ours": lambda: sample_video(path, cfg),
        "ours-pil": lambda: sample_video(path, pil_cfg),
        "torchcodec": lambda: torchcodec_frames(path, idx, sizes, cores),
        "pyav": lambda: pyav_frames(path, idx, sizes),
        "ffmpeg-scale": lambda: ffmpeg_scale_frames(path, idx, sizes[0], cores),
        "ffmpeg-rgb": lambda: ffmpeg_scale_frames(path, idx, native, cores, scale=False),
    }


# --- measuring -------------------------------------------------------------------------------

def cpu_seconds() -> float:
    """User + system CPU of this process and of its waited-for children (ffmpeg)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def median_interleaved(fns: dict, repeats: int, check) -> tuple[dict, dict, dict]:
    """Median wall time and median CPU seconds of each function, runs interleaved.
    Each output goes through ``check(name, frames)`` at once and is dropped (a 600 s video's
    768 frames are 0.5 GB per path: holding every path's would not fit next to the others)."""
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in fns}
    checked: dict[str, object] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            t, c = time.perf_counter(), cpu_seconds()
            out = fn()
            times[name].append((time.perf_counter() - t, cpu_seconds() - c))
            diff = check(name, out.frames if hasattr(out, "frames") else out)
            if diff is not None:  # None: not comparable (ffmpeg-rgb is not resized)
                prior = checked.get(name, diff)
                checked[name] = -1 if min(prior, diff) < 0 else max(prior, diff)  # the worst over the repeats
            del out
    wall = {k: statistics.median(t for t, _ in v) for k, v in times.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in times.items()}
    return wall, cpu, checked


def max_diff(frames, ref) -> int:
    if len(frames) != len(ref):
        return -1
    return max(int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max()) for a, b in zip(frames, ref))


def pixel_check(ref: list, pil_ref: list, means: dict):
    """``check(name, frames)``: max abs diff to the torch-resized decord frames (``ours-pil`` to
    the PIL-resized ones); for the paths whose pixels differ, the mean abs diff goes in ``means``."""

    def check(name: str, frames) -> int | None:
        if name == "ffmpeg-rgb":
            return None
        against = pil_ref if name == "ours-pil" else ref
        if name in ("decord+PIL", "ffmpeg-scale") and len(frames) == len(against):
            means[name] = float(np.mean([np.abs(a.astype(np.int16) - b).mean() for a, b in zip(frames, against)]))
        return max_diff(frames, against)

    return check


def machine() -> str:
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.machine())
    import torch

    return (f"{model}, {host_cores()} cores, Python {platform.python_version()}, torch {torch.__version__} "
            f"({torch.backends.cpu.get_cpu_capability()})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=Path, help="keep generated clips here (reused when present)")
    ap.add_argument("--only", nargs="+", default=DEFAULT_RUNS, help="size:seconds, e.g. 720p:30")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--qwen-vl-utils", dest="qvu", help="a --target dir with qwen-vl-utils and torchvision")
    ap.add_argument("--skip", nargs="*", default=[], help="paths to leave out, e.g. pyav")
    ap.add_argument("--decode-only", action="store_true",
                    help="add ffmpeg-rgb: ffmpeg select to rgb24 at the source size, no resize")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    cfg = VideoSamplingConfig(hybrid=None)
    cores = host_cores()
    print(f"machine: {machine()}; load average at start (1, 5, 15 min) "
          + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    names = ["decord+PIL", "decord+torch", "ours", "ours-pil", "torchcodec", "pyav", "ffmpeg-scale"]
    names += ["ffmpeg-rgb"] if args.decode_only else []
    names = [n for n in names if n not in args.skip]
    print("| clip | frames | size | " + " | ".join(f"{n} s (cpu)" for n in names)
          + " | decord+PIL / ours | ours / limit | max diff to decord+torch: ours, torchcodec, pyav; PIL, ffmpeg-scale"
          " | ours-pil = decord+PIL | = qwen-vl-utils | load |")
    print("|" + "---|" * (len(names) + 9))
    tmp = None
    if args.clips is None:
        tmp = tempfile.TemporaryDirectory()
        clip_dir = Path(tmp.name)
    else:
        clip_dir = args.clips
        clip_dir.mkdir(parents=True, exist_ok=True)
    try:
        for run in args.only:
            label, seconds = run.split(":")
            height, width = CLIPS[label]
            path = clip_dir / f"{label}_{seconds}s.mp4"
            if not path.is_file():
                realistic_clip(path, float(seconds), height, width)
            meta = probe(path, open_reader(path))
            plan = plan_video(meta.total_frames, meta.fps, meta.height, meta.width, cfg)
            idx, sizes = plan.indices, plan.sizes
            paths = contenders(path, idx, sizes, cores, (meta.height, meta.width))
            ref = baseline_frames(path, idx, sizes, resize="torch")  # qwen-vl-utils' decord path
            pil_ref = baseline_frames(path, idx, sizes, resize="pil")

            means: dict[str, float] = {}
            check = pixel_check(ref, pil_ref, means)
            wall, cpu, diffs = median_interleaved({n: paths[n] for n in names}, args.repeats, check)
            same = ", ".join(str(diffs.get(n, "-")) for n in ("ours", "torchcodec", "pyav"))
            differ = ", ".join(f"{diffs[n]} (mean {means[n]:.2f})" if n in means else str(diffs.get(n, "-"))
                               for n in ("decord+PIL", "ffmpeg-scale"))
            pil_same = diffs["ours-pil"] == 0 if "ours-pil" in diffs else "-"
            qvu = "-"
            if args.qvu and len(idx) * height * width * 3 * 4 <= 3 << 30:
                q_idx, q_frames = qwen_vl_utils_frames(args.qvu, path)
                qvu = f"indices {'equal' if q_idx == idx else 'DIFFER'}, max diff {max_diff(list(q_frames), ref)}"
                del q_frames
            del ref, pil_ref
            cols = " | ".join(f"{wall[n]:.2f} ({cpu[n]:.2f})" for n in names)
            vs_base = f"{wall['decord+PIL'] / wall['ours']:.2f}x" if "decord+PIL" in wall else "-"
            vs_limit = f"{wall['ours'] / wall['ffmpeg-scale']:.2f}" if "ffmpeg-scale" in wall else "-"
            print(f"| {label} {seconds} s | {len(idx)} | {sizes[0][1]}x{sizes[0][0]} | {cols} | {vs_base} | {vs_limit} | "
                  f"{same}; {differ} | {pil_same} | {qvu} | {os.getloadavg()[0]:.1f} |", flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
