"""The 2 fps frame rule, smart_resize and the per-video pixel budget, on metadata alone."""

import math

import numpy as np
import pytest
import torch

from assets.video.grid import VIDEO_MIN_PIXELS, HybridConfig, PlanError, smart_resize
from assets.video.plan import (
    VideoSamplingConfig,
    frame_indices,
    frame_max_pixels,
    linspace_f32,
    plan_video,
    sample_count,
)

NO_HYBRID = VideoSamplingConfig(hybrid=None)


def reference_count(total: int, video_fps: float, fps: float = 2.0, min_frames: int = 4, max_frames: int = 768) -> int:
    """qwen-vl-utils 0.0.14 ``smart_nframes`` as published, written out again (0 where it raises)."""
    lo = math.ceil(min_frames / 2) * 2
    hi = math.floor(min(max_frames, total) / 2) * 2
    n = total / video_fps * fps
    n = min(min(max(n, lo), hi), total)
    n = math.floor(n / 2) * 2
    return n if 2 <= n <= total else 0


def reference_indices(total: int, n: int) -> list[int]:
    """qwen-vl-utils' indices: ``torch.linspace`` (float32, its default) rounded."""
    return torch.linspace(0, total - 1, n).round().long().tolist()


# (total_frames, video_fps, expected n): hand-computed
CASES = [
    (10, 1.0, 10),  # 1 fps source, 10 s: 20 -> every frame (below 2 fps)
    (5, 1.0, 4),  # 1 fps, 5 s: clamp to floor2(5) = 4
    (240, 24.0, 20),  # 10 s at 24 fps
    (225, 25.0, 18),  # 9 s at 25 fps
    (150, 29.97, 10),  # 5.005 s at 29.97 -> 10.01 -> 10
    (1798, 29.97, 118),  # 59.99 s at NTSC -> 119.99 -> floor2 118 (rounding first gave 120)
    (1828, 29.97, 120),  # 61 s at 29.97 -> 121.99 -> 120 (rounding first gave 122)
    (87, 30.0, 4),  # 2.9 s at 30 fps -> 5.8 -> 4 (rounding first gave 6)
    (240, 60.0, 8),  # 4 s at 60 fps
    (15, 30.0, 4),  # 0.5 s clip: min_frames 4
    (12, 24.0, 4),  # 0.5 s at 24 fps
    (3, 30.0, 2),  # 3 frames: clamp to floor2(3) = 2
    (2, 30.0, 2),
    (108000, 30.0, 768),  # 1 hour at 30 fps: capped at 768
    (86400, 24.0, 768),
    (107892, 29.97, 768),
    (216000, 60.0, 768),
    (1000, 2.0, 768),  # 500 s at exactly 2 fps: 1000 -> cap 768
    (310 * 10, 10.0, 620),  # the embedded MLVU video
    (57, 10.0, 10),  # 5.7 s -> 11.4 -> floor2 10
    (63, 10.0, 12),  # 6.3 s -> 12.6 -> floor2 12
    (29, 10.0, 4),  # 2.9 s -> 5.8 -> floor2 4 (rounding first gave 6)
]


@pytest.mark.parametrize("total,fps,expected", CASES)
def test_frame_count_rule(total, fps, expected):
    assert sample_count(total, fps) == expected == reference_count(total, fps)
    idx = frame_indices(total, fps)
    assert idx == reference_indices(total, expected)
    assert idx[0] == 0 and idx[-1] == total - 1 and len(idx) == expected
    assert all(b >= a for a, b in zip(idx, idx[1:]))


FPS = [1.0, 10.0, 23.976, 24.0, 25.0, 29.97, 30.0, 50.0, 60.0]
LONG_TOTALS = [10**5, 107892, 108000, 216000, 10**6, 2_592_000, 2**24 - 1, 2**24, 2**24 + 1, 10**8]


def test_count_and_indices_equal_qwen_vl_utils_for_every_total():
    """Every total from 1 to 20,000 frames and long ones, at nine source rates: the count is
    ``smart_nframes``' and the indices torch's float32 linspace rounded (each distinct
    (total, n) pair compared once). A 1-frame clip, where ``smart_nframes`` raises, keeps our
    defined result: its frame twice."""
    pairs = set()
    for fps in FPS:
        assert reference_count(1, fps) == 0 and sample_count(1, fps) == 2 and frame_indices(1, fps) == [0, 0]
        for total in [*range(2, 20001), *LONG_TOTALS]:
            n = reference_count(total, fps)
            assert n >= 2, (total, fps)
            assert sample_count(total, fps) == n, (total, fps)
            pairs.add((total, fps, n))
    seen, checked = set(), 0
    for total, fps, n in sorted(pairs):
        if (total, n) in seen:
            continue
        seen.add((total, n))
        assert frame_indices(total, fps) == reference_indices(total, n), (total, fps, n)
        checked += 1
    assert checked > 90_000  # 96,000 distinct (total, n) pairs below 20,001 frames, plus the long totals


def test_float32_grid_is_what_moves_long_video_indices():
    # 1 h at 30 fps, 768 frames: a float64 linspace rounds two indices the other way
    idx = frame_indices(108000, 30.0)
    f64 = np.linspace(0, 107999, 768).round().astype(int).tolist()
    assert [(i, a, b) for i, (a, b) in enumerate(zip(idx, f64)) if a != b] == [(412, 58012, 58013), (469, 66038, 66039)]
    assert np.array_equal(linspace_f32(107999, 768), torch.linspace(0, 107999, 768).numpy())


def test_indices_follow_the_config_counts():
    cfg = VideoSamplingConfig(hybrid=None, fps=1.0, min_frames=5, max_frames=41)  # ceil2(5) = 6, floor2(41) = 40
    assert sample_count(7, 30.0, cfg) == 6 == reference_count(7, 30.0, 1.0, 5, 41)
    assert sample_count(3000, 30.0, cfg) == 40 == reference_count(3000, 30.0, 1.0, 5, 41)
    assert frame_indices(3000, 30.0, cfg) == reference_indices(3000, 40)


def test_single_frame_clip_is_one_duplicated_pair():
    plan = plan_video(1, 25.0, 240, 320, NO_HYBRID)
    assert plan.indices == [0, 0]
    assert plan.grids == [(1, plan.sizes[0][0] // 14, plan.sizes[0][1] // 14)]
    assert "single_frame_duplicated" in plan.notes


def test_low_fps_source_gives_every_frame_and_a_note():
    plan = plan_video(10, 1.0, 240, 320, NO_HYBRID)
    assert plan.indices == list(range(10))
    assert plan.timestamps == [float(i) for i in range(10)]
    assert "source_below_2fps" in plan.notes


@pytest.mark.parametrize("total,fps,reason", [(0, 30.0, "no_frames"), (100, 0.0, "bad_metadata"), (100, float("nan"), "bad_metadata")])
def test_unplannable_metadata_is_a_plan_error_not_a_crash(total, fps, reason):
    with pytest.raises(PlanError) as err:
        plan_video(total, fps, 240, 320)
    assert err.value.reason == reason


def test_part_max_frames_caps_the_count():
    cfg = NO_HYBRID.with_part(2.0, 16)
    assert sample_count(3000, 30.0, cfg) == 16


SIZES = [(360, 640), (240, 320), (120, 160), (1080, 1920), (2160, 3840), (256, 256), (20, 30), (100, 4000), (999, 13)]


def formula_resize(h, w, factor, min_px, max_px):
    """DESIGN.md section 5, written out again."""
    hb, wb = max(factor, round(h / factor) * factor), max(factor, round(w / factor) * factor)
    if hb * wb > max_px:
        beta = math.sqrt(h * w / max_px)
        hb, wb = max(factor, math.floor(h / beta / factor) * factor), max(factor, math.floor(w / beta / factor) * factor)
    elif hb * wb < min_px:
        beta = math.sqrt(min_px / (h * w))
        hb, wb = math.ceil(h * beta / factor) * factor, math.ceil(w * beta / factor) * factor
    return hb, wb


@pytest.mark.parametrize("h,w", SIZES)
@pytest.mark.parametrize("min_px,max_px", [(56 * 56, 28 * 28 * 1280), (VIDEO_MIN_PIXELS, 768 * 28 * 28), (4 * 784, 64 * 784)])
def test_smart_resize_matches_formula_and_transformers(h, w, min_px, max_px):
    # (image_processing_qwen2_vl needs torchvision; the PIL module carries the same copy)
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf

    ours = smart_resize(h, w, 28, min_px, max_px)
    assert ours == formula_resize(h, w, 28, min_px, max_px)
    assert ours[0] % 28 == 0 and ours[1] % 28 == 0
    if min(h, w) >= 14:  # transformers has no max(factor, ...) guard below half a patch
        assert ours == hf(h, w, 28, min_px, max_px)


def test_smart_resize_rejects_extreme_aspect_ratio():
    with pytest.raises(PlanError) as err:
        smart_resize(10, 3000)
    assert err.value.reason == "bad_aspect_ratio"


def test_per_video_pixel_budget_shrinks_long_videos():
    cfg = VideoSamplingConfig(hybrid=None)
    assert frame_max_pixels(16, cfg) == 768 * 28 * 28  # per-frame cap wins on short videos
    assert frame_max_pixels(768, cfg) == int(128000 * 28 * 28 * 0.9 / 768 * 2)
    small = VideoSamplingConfig(hybrid=None, total_pixels=24576 * 28 * 28)  # floor: min_pixels * 1.05
    assert frame_max_pixels(768, small) == int(VIDEO_MIN_PIXELS * 1.05)
    short = plan_video(600, 30.0, 1080, 1920, cfg)
    long = plan_video(108000, 30.0, 1080, 1920, cfg)
    assert short.sizes[0][0] * short.sizes[0][1] <= 768 * 28 * 28
    assert long.sizes[0][0] * long.sizes[0][1] <= frame_max_pixels(768, cfg) < short.sizes[0][0] * short.sizes[0][1]
    assert long.visual_tokens * 28 * 28 <= cfg.total_pixels


def test_plan_grid_and_tokens():
    plan = plan_video(300, 30.0, 360, 640, NO_HYBRID)  # 10 s -> 20 frames at 364x644
    assert plan.sizes[0] == (364, 644)
    assert plan.grids == [(10, 26, 46)]
    assert plan.visual_tokens == 10 * 13 * 23
    assert plan.duration == 10.0


def test_hybrid_is_off_for_short_videos_and_on_above_512_frames():
    cfg = VideoSamplingConfig()  # hybrid (4, 240, 3) above 512 frames
    assert plan_video(256 * 30, 30.0, 360, 640, cfg).hybrid is None  # 512 frames
    on = plan_video(300 * 30, 30.0, 360, 640, cfg)
    assert on.hybrid == HybridConfig() and len(on.indices) == 600 and len(on.grids) > 1
    assert HybridConfig.parse("4,240,3") == HybridConfig(4, 240, 3.0, min_frames=0)


def test_hybrid_sizes_are_capped_at_the_native_resolution():
    from assets.video.hybrid import native_size

    n = 600  # 300 s at 30 fps -> 600 frames: hybrid on
    tiny = plan_video(n // 2 * 30, 30.0, 120, 160, VideoSamplingConfig())
    assert native_size(120, 160) == (112, 168)  # 4 x 6 = 24 tokens natively
    assert set(tiny.sizes) == {(112, 168)}  # never upscaled to 240 or 80 tokens
    assert tiny.grids == [(n // 2, 8, 12)] and tiny.visual_tokens == n // 2 * 24  # rows merge: one size
    assert {"hybrid_high_capped_at_native", "hybrid_low_capped_at_native"} <= set(tiny.notes)
    mid = plan_video(n // 2 * 30, 30.0, 240, 320, VideoSamplingConfig())  # 9 x 11 = 99 tokens natively
    assert "hybrid_high_capped_at_native" in mid.notes and "hybrid_low_capped_at_native" not in mid.notes
    hi, lo = mid.tokens_per_row[0], mid.tokens_per_row[1] // 3
    assert hi == 99 and lo <= 80 and mid.sizes[0] == (252, 308)
    assert mid.visual_tokens == (n // 2 // 4) * (hi + 3 * lo)
    big = plan_video(n // 2 * 30, 30.0, 360, 640, VideoSamplingConfig())  # 13 x 23 = 299 tokens natively
    assert not [x for x in big.notes if "capped" in x]
    assert big.tokens_per_row[0] <= 240 and big.tokens_per_row[1] <= 3 * 80
