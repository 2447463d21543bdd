"""Decoding the planned frames of a video: an ffmpeg pipe, decord, an ffmpeg transcode when both fail.

With the default ``resize="torch"`` the output frames are the ones qwen-vl-utils 0.0.14's decord
path gives (``VideoReader.get_batch`` on the planned indices, then torchvision's bicubic
antialias resize of the uint8 tensor, ``assets.video.resize``), only faster; ``baseline_frames``
is that path written out, and ``benchmarks/video_sampling.py`` also compares against
qwen-vl-utils' own ``fetch_video``. ``resize="pil"`` keeps PIL bicubic instead (other pixels).

* first choice (``decoder="auto"``): ``assets.video.pipe``, ffmpeg decoding in its own process
  with a ``select`` filter so only sampled frames are converted to RGB; checked against decord
  (frame count, first and last frame) and dropped for the decord path below on any difference;
* the decord path reads frames in one forward pass: ``skip_frames`` over a gap and
  ``seek_accurate`` only when a keyframe lies inside the gap, so sparse samples of long videos
  do not decode everything;
* the resize (and any encoding) runs in a worker thread while the next frame decodes; torch's
  interpolate and Pillow both release the GIL, so the two halves of the work overlap;
* with ``workers > 1`` (``read_frames_parallel``) a long video is cut into contiguous spans of
  the sampled indices, each decoded by its own reader in its own thread (decord's ctypes calls
  release the GIL). Each span starts from a keyframe, so the frames stay identical; this is
  how one video uses more than one core on the decord path.

A file decord cannot open or read to the end is transcoded to H.264 with the ffmpeg binary
that imageio-ffmpeg ships (through ffmpeg-python, ``cmd=``) and retried; what still fails
raises ``DecodeError`` with a reason. Duration and fps come from decord's metadata, or from
``ffmpeg -i``'s stderr where decord reports none (there is no ffprobe here).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from assets.video.grid import PlanError
from assets.video.pipe import PipeMismatch, decode_threads, last_line, read_frames_pipe
from assets.video.plan import FramePlan, VideoSamplingConfig, plan_video
from assets.video.resize import resize_frame, torch_threads


class DecodeError(Exception):
    """A video that cannot be decoded; ``reason`` goes to the rejected table."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class VideoMeta:
    total_frames: int
    fps: float
    height: int
    width: int


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


_STREAM = re.compile(r"Stream #\S+.*Video:.*?(\d{2,5})x(\d{2,5}).*?(?:([\d.]+) fps|([\d.]+) tbr)")
_DURATION = re.compile(r"Duration: (\d+):(\d+):([\d.]+)")


def probe_ffmpeg(path: str | Path) -> VideoMeta:
    """Duration, fps and size parsed from ``ffmpeg -i`` (no ffprobe in this environment)."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    err = proc.stderr
    stream, duration = _STREAM.search(err), _DURATION.search(err)
    if not stream or not duration:
        raise DecodeError("unreadable", last_line(err) or "ffmpeg found no video stream")
    fps = float(stream.group(3) or stream.group(4))
    seconds = int(duration.group(1)) * 3600 + int(duration.group(2)) * 60 + float(duration.group(3))
    return VideoMeta(round(seconds * fps), fps, int(stream.group(2)), int(stream.group(1)))


def open_reader(path: str | Path):
    import decord

    try:
        return decord.VideoReader(str(path), num_threads=1)
    except Exception as exc:  # decord raises its own DECORDError, RuntimeError or others
        raise DecodeError("unreadable", f"decord: {last_line(str(exc))}") from None


def probe(path: str | Path, reader=None) -> VideoMeta:
    """Metadata from decord (the reader that will decode), fps from ffmpeg if decord has none."""
    vr = reader if reader is not None else open_reader(path)
    total = len(vr)
    fps = float(vr.get_avg_fps() or 0.0)
    if total <= 0:
        raise DecodeError("no_frames", "decord reports 0 frames")
    height, width = vr[0].shape[:2]
    vr.seek(0)
    if not fps or not np.isfinite(fps) or fps <= 0:
        fps = probe_ffmpeg(path).fps
    return VideoMeta(total, fps, int(height), int(width))


def resize_then(
    frame: np.ndarray, size: tuple[int, int], post: Callable[[np.ndarray], Any] | None, resize: str = "torch"
) -> Any:
    """What every decoder does with a decoded frame: the planned resize, then ``post``."""
    out = resize_frame(frame, size, resize)
    return post(out) if post else out


SEEK_GAIN = 60


def read_frames(
    reader,
    indices: Sequence[int],
    sizes: Sequence[tuple[int, int]],
    post: Callable[[np.ndarray], Any] | None = None,
    seek_gain: int = SEEK_GAIN,
    resize: str = "torch",
) -> list[Any]:
    """Decode ``indices`` (ascending, repeats allowed) in one pass; resize each to ``sizes[i]``
    (``resize`` method) and apply ``post`` in a worker thread. Returns the results in order.

    A gap is skipped by decoding through it unless a keyframe in it lets ``seek_accurate``
    avoid more than ``seek_gain`` frames (a seek flushes the decoder, so short jumps lose)."""
    keys = np.asarray(reader.get_key_indices(), dtype=np.int64)
    futures = []
    pos = 0  # index of the frame the next ``next()`` returns
    last: np.ndarray | None = None
    last_index = -1
    reader.seek(0)
    with ThreadPoolExecutor(1) as pool:
        for i, size in zip(indices, sizes):
            if i == last_index and last is not None:
                futures.append(pool.submit(resize_then, last, size, post, resize))
                continue
            if i < pos:
                reader.seek_accurate(i)
            elif i > pos:
                k = keys[np.searchsorted(keys, i, side="right") - 1] if len(keys) else 0
                if k - pos > seek_gain:  # a keyframe far into the gap: jump there instead
                    reader.seek_accurate(i)
                else:
                    reader.skip_frames(i - pos)
            last = reader.next().asnumpy()
            last_index, pos = i, i + 1
            futures.append(pool.submit(resize_then, last, size, post, resize))
        return [f.result() for f in futures]


MIN_SPLIT_FRAMES = 600  # source frames; below this a second process costs more than it saves


def split_spans(indices: Sequence[int], workers: int) -> list[slice]:
    """Contiguous slices of ``indices`` (ascending) with about equal source-frame spans, as
    decode work grows with the frames spanned, not with the frames sampled. Repeated indices
    stay in one slice; empty slices are dropped."""
    if not len(indices):
        return []
    lo, hi = int(indices[0]), int(indices[-1])
    cuts = [lo + (hi - lo + 1) * k / workers for k in range(1, workers)]
    bounds = [0] + [int(np.searchsorted(np.asarray(indices), c, side="left")) for c in cuts] + [len(indices)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def read_frames_parallel(
    path: str | Path,
    indices: Sequence[int],
    sizes: Sequence[tuple[int, int]],
    post: Callable[[np.ndarray], Any] | None = None,
    workers: int = 2,
    reader=None,
    min_split_frames: int = MIN_SPLIT_FRAMES,
    resize: str = "torch",
) -> list[Any]:
    """``read_frames`` with the video cut into ``workers`` spans, each decoded by its own
    reader in its own thread (the caller's thread takes the first span).

    Threads, not processes: decord's wheels call its C API through ctypes, which releases the
    GIL, so readers decode in parallel; nothing is started, pickled or copied between
    processes (a build with decord's optional Cython FFI would serialise the spans: still
    correct, only not faster). Spans start at a seek to their keyframe, so every frame is decoded exactly as
    in one pass. Falls back to one reader for spans shorter than ``min_split_frames``."""
    indices, sizes = list(indices), list(sizes)
    spans = split_spans(indices, workers) if workers > 1 and indices else []
    if len(spans) < 2 or indices[-1] - indices[0] < min_split_frames:
        return read_frames(reader if reader is not None else open_reader(path), indices, sizes, post, resize=resize)
    with ThreadPoolExecutor(len(spans) - 1) as pool:
        rest = [pool.submit(lambda s: read_frames(open_reader(path), indices[s], sizes[s], post, resize=resize), s)
                for s in spans[1:]]
        head = spans[0]
        out = read_frames(reader if reader is not None else open_reader(path), indices[head], sizes[head], post,
                          resize=resize)
        for future in rest:
            out += future.result()
    return out


def baseline_frames(
    path: str | Path,
    indices: Sequence[int],
    sizes: Sequence[tuple[int, int]],
    num_threads: int = 0,
    resize: str = "torch",
) -> list[np.ndarray]:
    """The reference: decord ``get_batch`` + a resize per frame. With ``resize="torch"`` this is
    qwen-vl-utils' decord path (it opens ``VideoReader(path)`` with decord's default
    ``num_threads=0``, ffmpeg's auto thread count, and resizes with torchvision's bicubic
    antialias); ``resize="pil"`` is the decord + PIL baseline of the benchmark."""
    import decord

    vr = decord.VideoReader(str(path), num_threads=num_threads)
    batch = vr.get_batch(list(indices)).asnumpy()
    return [resize_frame(f, s, resize) for f, s in zip(batch, sizes)]


def transcode(path: str | Path, out_dir: str | Path) -> Path:
    """Re-encode to a plain H.264 mp4 that decord reads; DecodeError if ffmpeg cannot."""
    import ffmpeg

    out = Path(out_dir) / (Path(path).stem + ".transcoded.mp4")
    try:
        (
            ffmpeg.input(str(path))
            .output(str(out), vcodec="libx264", preset="ultrafast", crf=18, pix_fmt="yuv420p", an=None)
            .overwrite_output()
            .run(cmd=ffmpeg_exe(), capture_stdout=True, capture_stderr=True)
        )
    except ffmpeg.Error as exc:
        raise DecodeError("unreadable", f"ffmpeg transcode failed: {last_line(exc.stderr.decode(errors='replace'))}") from None
    if not out.is_file() or out.stat().st_size == 0:
        raise DecodeError("unreadable", "ffmpeg transcode produced no output")
    return out


@dataclass
class SampledVideo:
    plan: FramePlan
    frames: list[Any]
    transcoded: bool
    decoder: str = "decord"
    """``ffmpeg-pipe`` or ``decord``; ``fallback`` says why the pipe was not used, if tried."""
    fallback: str | None = None


DECODERS = ("auto", "decord")


def resize_threads(cores: int) -> int:
    """Resize (and ``post``) threads next to ffmpeg's ``cores`` decode threads: one per two
    cores. On 2 cores one thread keeps up with ffmpeg; a bigger share gets more, since a torch
    resize of a 1080p frame (about 30-50 ms) outlasts ffmpeg's decode of the frames between two
    samples once ffmpeg has several threads."""
    return max(1, cores // 2)


def read_frames_verified(
    path: str | Path, reader, meta: VideoMeta, plan: FramePlan, post, cores: int, resize: str = "torch"
) -> tuple[list[Any], str]:
    """Frames from the ffmpeg pipe (``cores`` decode threads) if decord agrees on the first and
    last sampled frame (fetched by decord in a thread while ffmpeg runs), else ``PipeMismatch``.

    Frames are resized in a pool of ``resize_threads(cores)`` threads while the pipe is read, so
    ffmpeg never waits on a resize; at most ``2 * threads + 2`` raw frames are in flight (a
    1080p frame is 6 MB, a whole video's frames would not fit in memory)."""
    first, last = int(plan.indices[0]), int(plan.indices[-1])
    k = resize_threads(cores)
    in_flight = threading.BoundedSemaphore(2 * k + 2)

    def submit(frame: np.ndarray, size: tuple[int, int]) -> Future:
        in_flight.acquire()
        future = pool.submit(resize_then, frame, size, post, resize)
        future.add_done_callback(lambda _: in_flight.release())
        return future

    with ThreadPoolExecutor(1) as check, ThreadPoolExecutor(k) as pool:
        ref = check.submit(lambda: (reader[first].asnumpy(), reader[last].asnumpy()))
        got = read_frames_pipe(
            ffmpeg_exe(), path, plan.indices, plan.sizes, (meta.height, meta.width), submit, threads=cores
        )
        results = [f.result() for f in got.results]
        ref_first, ref_last = ref.result()
    if not (np.array_equal(got.first_raw, ref_first) and np.array_equal(got.last_raw, ref_last)):
        raise PipeMismatch(f"ffmpeg and decord disagree on frame {first} or {last}")
    return results, "ffmpeg-pipe"


def _sample_once(path: str | Path, cfg: VideoSamplingConfig, post, cores: int, decoder: str) -> SampledVideo:
    reader = open_reader(path)
    meta = probe(path, reader)
    plan = plan_video(meta.total_frames, meta.fps, meta.height, meta.width, cfg)
    fallback = None
    if decoder == "auto":
        try:
            frames, used = read_frames_verified(path, reader, meta, plan, post, cores, cfg.resize)
            return SampledVideo(plan, frames, transcoded=False, decoder=used)
        except (PipeMismatch, OSError) as exc:
            fallback = str(exc)[:300]
        except Exception as exc:  # decord failing on the reference frames: the decord path below says why
            fallback = f"{type(exc).__name__}: {last_line(str(exc))}"
    try:
        frames = read_frames_parallel(path, plan.indices, plan.sizes, post, workers=cores, reader=reader,
                                      resize=cfg.resize)
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError("decode_failed", f"decord: {last_line(str(exc))}") from None
    return SampledVideo(plan, frames, transcoded=False, decoder="decord", fallback=fallback)


def sample_video(
    path: str | Path,
    cfg: VideoSamplingConfig = VideoSamplingConfig(),
    post: Callable[[np.ndarray], Any] | None = None,
    workers: int | None = None,
    decoder: str = "auto",
) -> SampledVideo:
    """Plan and decode one video; transcode and retry once if decord fails.

    ``workers``: the cores this video may use (ffmpeg decode threads and resize threads, or
    decord reader threads on the fallback path); None = every core of the host, for a caller
    that samples one video at a time. A stage that samples several videos at once passes its
    share, ``decode_threads(videos_at_once)``. ``decoder="decord"`` skips the ffmpeg pipe (the
    frames are the same; it is slower). While it runs, torch's intra-op threads are 1
    (``torch_threads``): the parallelism is ffmpeg's and the resize pool's.

    Raises ``DecodeError`` or ``PlanError`` (both carry ``reason`` and ``detail``)."""
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    cores = decode_threads() if workers is None else max(1, int(workers))
    path = Path(path)
    if not path.is_file():
        raise DecodeError("missing_media", f"file not found: {path}")
    if path.stat().st_size == 0:
        raise DecodeError("empty_file", "file is 0 bytes")
    with torch_threads(1 if cfg.resize == "torch" else None):
        try:
            return _sample_once(path, cfg, post, cores, decoder)
        except PlanError:
            raise
        except DecodeError as first:
            with tempfile.TemporaryDirectory(prefix="giraffe-transcode-") as tmp:
                try:
                    fixed = transcode(path, tmp)
                    result = _sample_once(fixed, cfg, post, cores, decoder)
                except DecodeError as second:
                    raise DecodeError(second.reason, f"{second.detail} (after: {first.reason}: {first.detail})") from None
                result.transcoded = True
                return result
