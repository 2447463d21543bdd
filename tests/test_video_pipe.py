"""The ffmpeg select pipe: frames equal to decord's, and the fallback when they would not be."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from assets.sources.embedded.media import encode_video
from assets.video.decode import baseline_frames, ffmpeg_exe, open_reader, resize_threads, sample_video
from assets.video.pipe import PipeMismatch, decode_threads, host_cores, read_frames_pipe, select_expression
from assets.video.plan import VideoSamplingConfig
from assets.video.resize import resize_frame

NO_HYBRID = VideoSamplingConfig(hybrid=None)


def _encode(path: Path, *args: str, seconds: float = 4, size: str = "320x240", fps: int = 30) -> Path:
    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}",
           *args, str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-500:]
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pipe")
    out = {
        "h264": encode_video(d / "h264.mp4", seconds=8, fps=25, size=(320, 240)),
        "odd": encode_video(d / "odd.mp4", seconds=3, fps=24, size=(250, 142)),
        "one": encode_video(d / "one.mp4", seconds=0.04, fps=25, size=(160, 120)),
        "bframes": _encode(d / "bframes.mp4", "-c:v", "libx264", "-preset", "medium", "-bf", "3", "-pix_fmt", "yuv420p"),
        "mpeg4": _encode(d / "mpeg4.avi", "-c:v", "mpeg4", "-q:v", "5"),
        "mjpeg": _encode(d / "mjpeg.avi", "-c:v", "mjpeg", "-q:v", "5"),
        "vfr": _encode(d / "vfr.mkv", "-vf", "setpts='N/30/TB+if(gt(N,60),0.5/TB,0)'", "-fps_mode", "vfr",
                       "-c:v", "libx264", "-preset", "ultrafast"),
        "ten_bit": _encode(d / "ten_bit.mp4", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le"),
    }
    rotated = d / "rotated.mp4"
    proc = subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-display_rotation", "90", "-i", str(out["bframes"]),
                           "-c", "copy", str(rotated)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-500:]
    out["rotated"] = rotated
    return out


def _decord_frames(path: Path, indices: list[int]) -> np.ndarray:
    return open_reader(path).get_batch(indices).asnumpy()


def test_select_expression_is_true_exactly_on_the_indices():
    # Compile the expression as ffmpeg evaluates it (if/lt/eq on the frame number n).
    def compiled(expr: str):
        code = expr.replace("if(", "_if(").replace("lt(n,", "_lt(n,").replace("eq(n,", "_eq(n,")
        env = {"_if": lambda c, a, b: a if c else b, "_lt": lambda x, y: x < y, "_eq": lambda x, y: x == y}
        return eval("lambda n: " + code, env)

    for indices in ([0], [0, 0], [3, 4, 5], [0, 17, 33, 50, 66, 83, 99, 116, 132, 149], list(range(0, 18000, 23))):
        expr = select_expression(indices)
        selected = compiled(expr)
        assert [n for n in range(max(indices) + 30) if selected(n)] == sorted(set(indices))
        assert expr.count("if(") == len(set(indices)) - 1
    with pytest.raises(ValueError):
        select_expression([])


def test_pipe_frames_equal_decord_frames_with_repeats_and_edges(clips):
    path = clips["h264"]
    total = len(open_reader(path))
    indices = [0, 0, 1, 29, 30, 31, 99, 150, total - 2, total - 1, total - 1]
    ref = _decord_frames(path, indices)
    sizes = [(240, 320)] * len(indices)
    got = read_frames_pipe(ffmpeg_exe(), path, indices, sizes, (240, 320), lambda f, s: f.copy())
    assert len(got.results) == len(indices)
    for k, (a, b) in enumerate(zip(got.results, ref)):
        assert np.array_equal(a, b), f"frame {indices[k]}"
    assert np.array_equal(got.first_raw, ref[0]) and np.array_equal(got.last_raw, ref[-1])
    # finish gets the planned size of each position, in plan order
    seen = []
    read_frames_pipe(ffmpeg_exe(), path, [0, 0, 10], [(112, 140), (56, 84), (28, 28)], (240, 320),
                     lambda f, s: seen.append(s))
    assert seen == [(112, 140), (56, 84), (28, 28)]


@pytest.mark.parametrize("name", ["h264", "bframes", "rotated"])
def test_decode_threads_do_not_change_the_frames(clips, name):
    path = clips[name]
    total = len(open_reader(path))
    indices = sorted({0, 1, 7, 30, 31, total // 2, total - 2, total - 1})
    ref = _decord_frames(path, indices)
    height, width = ref.shape[1:3]
    for threads in (1, 2, 4, 0):  # 0: ffmpeg's automatic count
        got = read_frames_pipe(ffmpeg_exe(), path, indices, [(height, width)] * len(indices), (height, width),
                               lambda f, s: f.copy(), threads=threads)
        assert all(np.array_equal(a, b) for a, b in zip(got.results, ref)), threads
    one = sample_video(path, NO_HYBRID, workers=1)
    many = sample_video(path, NO_HYBRID, workers=4)  # 4 decode threads, 2 resize threads
    assert one.decoder == many.decoder == "ffmpeg-pipe"
    assert all(np.array_equal(a, b) for a, b in zip(one.frames, many.frames))


def test_decode_threads_share_the_host():
    cores = host_cores()
    assert cores == len(os.sched_getaffinity(0))
    assert decode_threads() == cores and decode_threads(1) == cores
    assert decode_threads(cores) == 1 and decode_threads(cores * 4) == 1
    assert decode_threads(2) == max(1, cores // 2)
    assert [resize_threads(c) for c in (1, 2, 3, 4, 16)] == [1, 1, 1, 2, 8]


def test_pipe_refuses_what_it_cannot_vouch_for(clips):
    path = clips["h264"]
    total = len(open_reader(path))
    with pytest.raises(ValueError, match="ascending"):
        read_frames_pipe(ffmpeg_exe(), path, [5, 0], [(240, 320)] * 2, (240, 320), lambda f, s: f)
    # a wrong source size misreads the byte stream: the frame count no longer adds up
    with pytest.raises(PipeMismatch, match="more than the 3 planned frames"):
        read_frames_pipe(ffmpeg_exe(), path, [0, 50, 100], [(240, 320)] * 3, (120, 160), lambda f, s: f)
    # an index past the end is never selected
    with pytest.raises(PipeMismatch, match="2 of 3"):
        read_frames_pipe(ffmpeg_exe(), path, [0, 50, total + 10], [(240, 320)] * 3, (240, 320), lambda f, s: f)
    with pytest.raises(PipeMismatch, match="ffmpeg exited"):
        read_frames_pipe(ffmpeg_exe(), path.with_name("missing.mp4"), [0], [(240, 320)], (240, 320), lambda f, s: f)


@pytest.mark.parametrize("name", ["h264", "odd", "one", "bframes", "mpeg4", "mjpeg", "vfr", "rotated"])
def test_sample_video_uses_the_pipe_and_equals_the_baseline(clips, name):
    got = sample_video(clips[name], NO_HYBRID)
    assert got.decoder == "ffmpeg-pipe", got.fallback
    ref = baseline_frames(clips[name], got.plan.indices, got.plan.sizes)
    assert len(got.frames) == len(ref) == len(got.plan.indices)
    assert all(np.array_equal(a, b) for a, b in zip(got.frames, ref))
    assert all(f.shape[:2] == tuple(s) for f, s in zip(got.frames, got.plan.sizes))


def test_ten_bit_video_falls_back_to_decord_with_the_reason(clips):
    # libswscale converts 10-bit input differently in decord's build: the first/last frame
    # check sees it, and the decord path gives the baseline's frames.
    got = sample_video(clips["ten_bit"], NO_HYBRID)
    assert got.decoder == "decord"
    assert "disagree" in got.fallback
    ref = baseline_frames(clips["ten_bit"], got.plan.indices, got.plan.sizes)
    assert all(np.array_equal(a, b) for a, b in zip(got.frames, ref))


def test_an_ffmpeg_that_fails_falls_back_to_decord(clips, tmp_path, monkeypatch):
    # An ffmpeg that does not know the options (older builds lack `-/vf`) exits non-zero.
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\necho \"Unrecognized option '/vf'.\" >&2\nexit 8\n")
    fake.chmod(0o755)
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(fake))
    got = sample_video(clips["h264"], NO_HYBRID)
    assert got.decoder == "decord" and "ffmpeg exited 8" in got.fallback and "/vf" in got.fallback
    ref = baseline_frames(clips["h264"], got.plan.indices, got.plan.sizes)
    assert all(np.array_equal(a, b) for a, b in zip(got.frames, ref))


def test_decoder_decord_skips_the_pipe_and_gives_the_same_frames(clips):
    auto = sample_video(clips["h264"], NO_HYBRID, post=lambda f: resize_frame(f, (28, 28)))
    forced = sample_video(clips["h264"], NO_HYBRID, post=lambda f: resize_frame(f, (28, 28)), decoder="decord")
    assert (auto.decoder, forced.decoder, forced.fallback) == ("ffmpeg-pipe", "decord", None)
    assert all(np.array_equal(a, b) for a, b in zip(auto.frames, forced.frames))
    with pytest.raises(ValueError, match="decoder"):
        sample_video(clips["h264"], NO_HYBRID, decoder="pyav")


@pytest.mark.parametrize("resize", ["torch", "pil"])
def test_both_resize_methods_equal_their_baseline(clips, resize):
    cfg = VideoSamplingConfig(hybrid=None, resize=resize)
    got = sample_video(clips["odd"], cfg)  # 250x142 -> 448x252 (min_pixels): an upscale of odd sizes
    assert got.decoder == "ffmpeg-pipe" and got.plan.sizes[0] == (252, 448)
    ref = baseline_frames(clips["odd"], got.plan.indices, got.plan.sizes, resize=resize)
    assert all(np.array_equal(a, b) for a, b in zip(got.frames, ref))
    other = baseline_frames(clips["odd"], got.plan.indices, got.plan.sizes, resize="pil" if resize == "torch" else "torch")
    assert any(not np.array_equal(a, b) for a, b in zip(got.frames, other))


def test_the_stage_records_the_decoder(clips, tmp_path):
    from assets.video.frames import sample_to_shard

    row = sample_to_shard(str(clips["h264"]), NO_HYBRID, str(tmp_path))
    assert row["status"] == "ok" and row["decoder"] == "ffmpeg-pipe"
    again = sample_to_shard(str(clips["h264"]), NO_HYBRID, str(tmp_path))
    assert again["cached"] and again["decoder"] == "ffmpeg-pipe"
    assert os.path.isfile(row["frames_file"])
