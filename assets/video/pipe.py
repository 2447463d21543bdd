"""Decoding only the planned frames with the ffmpeg binary, streamed as raw RGB through a pipe.

Why this path exists: decord decodes inside our Python process, and the frames between two
samples still cost it nearly a full decode each (``get_batch``'s seeks, or ``skip_frames``).
Here ffmpeg (the imageio-ffmpeg binary, in its own process) decodes the stream and a
``select`` filter drops the unplanned frames *before* the RGB conversion, so only sampled
frames are converted and sent; Python only reads them and hands them to the resize threads.
ffmpeg decodes with the video's share of the host's cores (``decode_threads``): with one
thread it left half of a 2-core machine idle (``benchmarks/video_sampling.md``).

The RGB frames are the ones decord returns (same libswscale conversion, yuv -> rgb24 at the
source size, rotation metadata applied as decord applies it), and ffmpeg's frame threading
does not change decoded pixels, so after the same resize the output equals the decord path's.
Checked on H.264 (with and without B-frames), yuv444, HEVC, VP9, MPEG-4 part 2, MJPEG,
variable frame rate and a rotated file; 10-bit H.264 differs (decord converts it another way)
and is caught by the check below. The equality also rests on both readers numbering frames
alike, which holds for ordinary files but is not something ffmpeg promises for every container
(edit lists, broken timestamps). ``assets.video.decode`` therefore checks the frame count and
compares the first and last sampled frames against decord, and falls back to the decord path on
any difference, failure or older ffmpeg; ``PipeMismatch`` carries the reason.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def host_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity API on this platform
        return os.cpu_count() or 1


def decode_threads(concurrent: int = 1) -> int:
    """ffmpeg decode threads for one of ``concurrent`` videos decoding at once on this host:
    its share of the cores (ffmpeg's own automatic count is the whole host, which oversubscribes
    it when several videos decode in parallel)."""
    return max(1, host_cores() // max(1, concurrent))



class PipeMismatch(Exception):
    """The pipe could not give frames known to equal decord's; the caller falls back."""


def last_line(text: str) -> str:
    """The line of a tool's stderr or an exception that says what went wrong (its last)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def select_expression(indices: Sequence[int]) -> str:
    """An ffmpeg ``select`` expression true exactly on the frame numbers ``indices``.

    A binary search of ``if(lt(n, pivot), left, right)``: ffmpeg evaluates ``if`` lazily, so
    each frame costs about log2(len) comparisons, and the nesting stays ~10 deep (a flat
    ``eq(n,a)+eq(n,b)+...`` of a few hundred terms exceeds ffmpeg's expression limits)."""
    unique = sorted(set(int(i) for i in indices))
    if not unique:
        raise ValueError("no frame indices to select")

    def tree(lo: int, hi: int) -> str:
        if hi - lo == 1:
            return f"eq(n,{unique[lo]})"
        mid = (lo + hi) // 2
        return f"if(lt(n,{unique[mid]}),{tree(lo, mid)},{tree(mid, hi)})"

    return tree(0, len(unique))


@dataclass
class PipeFrames:
    """Results in plan order, and the raw (unresized) first and last sampled frames, which
    the caller compares against decord."""

    results: list[Any]
    first_raw: np.ndarray
    last_raw: np.ndarray


def _read_exact(stream, n: int) -> bytearray:
    """``n`` bytes, or fewer when the stream ends first."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        r = stream.readinto(view[got:])
        if not r:
            return buf[:got]
        got += r
    return buf


def read_frames_pipe(
    ffmpeg: str,
    path: str | Path,
    indices: Sequence[int],
    sizes: Sequence[tuple[int, int]],
    source_size: tuple[int, int],
    finish: Callable[[np.ndarray, tuple[int, int]], Any],
    threads: int | None = None,
) -> PipeFrames:
    """Frames ``indices`` (ascending, repeats allowed) of ``path``, each passed through
    ``finish(frame, sizes[i])`` (resize and encode) as it arrives from the pipe.

    ``source_size`` is decord's (height, width); a stream whose frames have another size,
    fewer frames than planned, more, or a failing ffmpeg raises ``PipeMismatch``. ``threads``:
    ffmpeg's decode threads, ``decode_threads()`` (all cores of the host) when None."""
    threads = decode_threads() if threads is None else threads
    order = [int(i) for i in indices]
    if order != sorted(order):
        raise ValueError("indices must be ascending")
    unique = sorted(set(order))
    height, width = source_size
    frame_bytes = height * width * 3
    with tempfile.TemporaryDirectory(prefix="giraffe-select-") as tmp:
        script = Path(tmp) / "select.txt"
        script.write_text(f"select='{select_expression(unique)}'")
        cmd = [
            ffmpeg, "-nostdin", "-hide_banner", "-v", "error", "-threads", str(threads),
            "-i", str(path), "-map", "0:v:0", "-an", "-sn", "-dn", "-/vf", str(script),
            "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1",
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        results: list[Any] = []
        first = last = None
        try:
            pos = 0
            for frame_no in unique:
                buf = _read_exact(proc.stdout, frame_bytes)
                if len(buf) != frame_bytes:
                    break
                raw = np.frombuffer(buf, np.uint8).reshape(height, width, 3)
                if first is None:
                    first = raw
                last = raw
                while pos < len(order) and order[pos] == frame_no:
                    results.append(finish(raw, sizes[pos]))
                    pos += 1
            extra = proc.stdout.read(1)
        finally:
            proc.stdout.close()
            err = proc.stderr.read().decode(errors="replace")
            proc.stderr.close()
            code = proc.wait()
    if extra:  # checked first: closing the pipe early makes ffmpeg exit with a broken pipe
        raise PipeMismatch(f"ffmpeg sent more than the {len(unique)} planned frames ({width}x{height} rgb24)")
    if code != 0:
        raise PipeMismatch(f"ffmpeg exited {code}: {last_line(err) or 'no message'}")
    if len(results) != len(order):
        raise PipeMismatch(f"ffmpeg selected {len(results)} of {len(order)} planned frames ({width}x{height} rgb24)")
    return PipeFrames(results, first, last)
