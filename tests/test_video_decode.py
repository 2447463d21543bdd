"""Decoding real mp4 files: equality with the baseline, bad inputs, patches and the model."""

from pathlib import Path

import numpy as np
import pytest
import torch

from assets.contract.chat_template import VIDEO_PLACEHOLDER
from assets.sources.embedded.media import encode_video
from assets.video.decode import (
    DecodeError,
    baseline_frames,
    probe_ffmpeg,
    read_frames_parallel,
    sample_video,
    split_spans,
)
from assets.video.grid import HybridConfig, PlanError
from assets.video.hybrid import paper_token_formula
from assets.video.inputs import expand_videos, mm_token_type_ids, normalize_frames, patchify, video_pixel_values
from assets.video.plan import VideoSamplingConfig

NO_HYBRID = VideoSamplingConfig(hybrid=None)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    out = {
        "ntsc": encode_video(d / "ntsc.mp4", seconds=5, fps=29.97, size=(320, 240)),
        "slow": encode_video(d / "slow.mp4", seconds=6, fps=1, size=(160, 120)),
        "one": encode_video(d / "one.mp4", seconds=0.04, fps=25, size=(160, 120)),
        "long": encode_video(d / "long.mp4", seconds=40, fps=10, size=(160, 120)),
    }
    good = out["ntsc"].read_bytes()
    (d / "truncated.mp4").write_bytes(good[: len(good) // 3])
    (d / "empty.mp4").write_bytes(b"")
    (d / "garbage.mp4").write_bytes(b"\x00\x01not a video at all" * 100)
    out.update(truncated=d / "truncated.mp4", empty=d / "empty.mp4", garbage=d / "garbage.mp4")
    return out


def test_frames_equal_the_baseline_decord_get_batch_plus_pil(clips):
    got = sample_video(clips["ntsc"], NO_HYBRID)
    assert got.plan.total_frames == 150 and abs(got.plan.video_fps - 29.97) < 0.01
    assert len(got.plan.indices) == 10 and not got.transcoded
    ref = baseline_frames(clips["ntsc"], got.plan.indices, got.plan.sizes)
    assert len(ref) == len(got.frames)
    assert all(np.array_equal(a, b) for a, b in zip(ref, got.frames))
    assert got.frames[0].shape == (*got.plan.sizes[0], 3)


def test_split_spans_are_contiguous_balanced_and_keep_repeats_together():
    idx = [0, 0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 99]
    spans = split_spans(idx, 2)
    assert [idx[s] for s in spans] == [[0, 0, 10, 20, 30, 40], [50, 60, 70, 80, 90, 99]]
    assert split_spans([5, 5], 2) == [slice(0, 2)]  # one distinct frame: nothing to split
    assert sum(s.stop - s.start for s in split_spans(list(range(0, 3000, 7)), 3)) == len(range(0, 3000, 7))


def test_video_split_across_processes_gives_the_baseline_frames(clips):
    got = sample_video(clips["long"], NO_HYBRID)  # 400 frames -> 80 sampled
    idx, sizes = got.plan.indices, got.plan.sizes
    ref = baseline_frames(clips["long"], idx, sizes)
    for workers in (2, 3):
        out = read_frames_parallel(clips["long"], idx, sizes, workers=workers, min_split_frames=0)
        assert len(out) == len(ref) and all(np.array_equal(a, b) for a, b in zip(ref, out))
    post = read_frames_parallel(clips["long"], idx, sizes, post=lambda f: 255 - f, workers=2, min_split_frames=0)
    assert all(np.array_equal(255 - a, b) for a, b in zip(ref, post))
    split = sample_video(clips["long"], NO_HYBRID, workers=2)  # 400 < MIN_SPLIT_FRAMES: one process
    assert all(np.array_equal(a, b) for a, b in zip(ref, split.frames))


def test_a_failure_in_another_span_is_raised_not_lost(clips, monkeypatch):
    import assets.video.decode as vd

    head = vd.open_reader(clips["long"])  # the caller's span reads with this one

    def broken(path):
        raise DecodeError("decode_failed", "boom in the second span")

    monkeypatch.setattr(vd, "open_reader", broken)  # only the other span opens a reader
    idx = list(range(0, 400, 5))
    with pytest.raises(DecodeError, match="second span"):
        read_frames_parallel(clips["long"], idx, [(112, 168)] * len(idx), workers=2, reader=head, min_split_frames=0)


def test_low_fps_source_is_sampled_whole(clips):
    got = sample_video(clips["slow"], NO_HYBRID)
    assert got.plan.indices == [0, 1, 2, 3, 4, 5] and "source_below_2fps" in got.plan.notes
    assert got.plan.timestamps == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_single_frame_clip_is_duplicated_into_one_pair(clips):
    got = sample_video(clips["one"], NO_HYBRID)
    assert got.plan.total_frames == 1 and got.plan.indices == [0, 0]
    assert np.array_equal(got.frames[0], got.frames[1])


@pytest.mark.parametrize("name,reason", [("empty", "empty_file"), ("truncated", "unreadable"), ("garbage", "unreadable")])
def test_bad_files_are_rejected_with_a_reason(clips, name, reason):
    with pytest.raises(DecodeError) as err:
        sample_video(clips[name], NO_HYBRID)
    assert err.value.reason == reason and err.value.detail
    if name != "empty":
        assert "transcode" in err.value.detail  # the ffmpeg retry ran and is recorded


def test_missing_file_is_a_decode_error(tmp_path):
    with pytest.raises(DecodeError) as err:
        sample_video(tmp_path / "nope.mp4")
    assert err.value.reason == "missing_media"


def test_ffmpeg_probe_reads_metadata_without_ffprobe(clips):
    meta = probe_ffmpeg(clips["ntsc"])
    assert (meta.width, meta.height) == (320, 240) and abs(meta.fps - 29.97) < 0.01
    assert meta.total_frames == 150


def test_patchify_is_pixel_equal_to_the_image_processor(clips):
    """Each temporal slot of our video patches equals the image processor's patches of that frame."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    got = sample_video(clips["ntsc"], NO_HYBRID)
    frames = got.frames[:4]
    ours, grid = patchify(normalize_frames(frames))
    assert ours.shape == (2 * grid[1] * grid[2], 3 * 2 * 14 * 14)
    ip = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=28 * 28 * 1280)
    ours = ours.reshape(2, -1, 3, 2, 14, 14)
    for k, frame in enumerate(frames):
        ref = ip(images=[frame], do_resize=False, return_tensors="np")
        assert ref["image_grid_thw"].tolist() == [[1, grid[1], grid[2]]]
        ref_patches = ref["pixel_values"].reshape(-1, 3, 2, 14, 14)[:, :, 0]
        assert np.array_equal(ours[k // 2, :, :, k % 2], ref_patches)


def test_hybrid_token_count_matches_the_paper_formula():
    from assets.video.plan import plan_video

    h = HybridConfig(4, 240, 3, min_frames=0)
    plan = plan_video(120 * 30, 30.0, 720, 1280, VideoSamplingConfig(hybrid=h))  # 240 frames, 120 patches
    n_groups = 120 // 4
    hi, lo = plan.tokens_per_row[0], plan.tokens_per_row[1] // 3
    assert plan.visual_tokens == n_groups * (hi + 3 * lo)
    assert len(plan.grids) == 2 * n_groups
    formula = paper_token_formula(n_groups, h)  # 30 * (1 + 3/3) * 240 = 14400
    assert formula == 14400
    # within the 28-pixel grid's rounding: each side loses at most one grid step
    a = 720 / 1280
    assert (np.sqrt(240 * a) - 1) * (np.sqrt(240 / a) - 1) <= hi <= 240
    assert (np.sqrt(80 * a) - 1) * (np.sqrt(80 / a) - 1) <= lo <= 80
    assert 0.85 * formula <= plan.visual_tokens <= formula
    full = plan_video(120 * 30, 30.0, 720, 1280, VideoSamplingConfig(hybrid=HybridConfig(1, 240, 1, 0)))
    assert full.visual_tokens == 120 * hi and plan.visual_tokens < 0.55 * full.visual_tokens


def test_tiny_model_forward_on_a_hybrid_video(clips, processor, tiny_model_dir):
    from transformers import Qwen2VLForConditionalGeneration

    cfg = VideoSamplingConfig(hybrid=HybridConfig(4, 24, 3, min_frames=0))
    got = sample_video(clips["long"], cfg)  # 40 s -> 80 frames -> 40 patches -> 10 groups
    assert len(got.plan.indices) == 80 and len(got.plan.grids) == 20
    assert got.plan.sizes[0] != got.plan.sizes[2]
    pixel_values, grid_thw = video_pixel_values(got.frames, got.plan.frame_rows, got.plan.grids)
    text = f"<|im_start|>user\n{VIDEO_PLACEHOLDER}What is shown?<|im_end|>\n"
    expanded = expand_videos(text, [got.plan.grids])
    ids = processor.tokenizer(expanded, return_tensors="pt")["input_ids"]
    n_pad = int((ids == processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")).sum())
    assert n_pad == got.plan.visual_tokens == sum(got.plan.tokens_per_row)
    model = Qwen2VLForConditionalGeneration.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        out = model(
            input_ids=ids,
            pixel_values_videos=torch.from_numpy(pixel_values),
            video_grid_thw=torch.from_numpy(grid_thw),
            mm_token_type_ids=mm_token_type_ids(ids, processor.tokenizer),
        )
    assert out.logits.shape[:2] == ids.shape and torch.isfinite(out.logits).all()


def test_plan_errors_surface_as_plan_error_reasons():
    with pytest.raises(PlanError):
        from assets.video.plan import plan_video

        plan_video(0, 30.0, 120, 160)
