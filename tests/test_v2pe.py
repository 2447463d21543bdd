"""V2PE positions: a hand-worked example for both layouts, and parity with transformers'
``get_rope_index`` when delta = 1."""

from __future__ import annotations

import random

import pytest
import torch
from PIL import Image

from training.positions.v2pe import (
    V2PE_TRAIN_DELTAS,
    DeltaSampler,
    V2PEConfig,
    v2pe_mrope_positions,
    v2pe_positions_1d,
)

# text(3), image, text(2), video, text(2). Image grid_thw (1, 2, 6) -> 1 x 1 x 3 = 3 tokens after
# the 2 x 2 merge; video grid_thw (2, 4, 6) -> 2 x 2 x 3 = 12 tokens (t-major, then h, then w).
TYPES = [0, 0, 0] + [1] * 3 + [0, 0] + [2] * 12 + [0, 0]
IMAGE_GRID = [1, 2, 6]
VIDEO_GRID = [2, 4, 6]


def test_1d_hand_worked_example():
    # image delta 1/4: 2 + k/4 for k = 1..3, then ceil(2.75) + 1 = 4
    # video delta 1/2: 5 + k/2 for k = 1..12 (5.5 .. 11), then ceil(11) + 1 = 12
    want = [0, 1, 2, 2.25, 2.5, 2.75, 4, 5, 5.5, 6, 6.5, 7, 7.5, 8, 8.5, 9, 9.5, 10, 10.5, 11, 12, 13]
    got = v2pe_positions_1d(TYPES, [0.25, 0.5])
    assert got.tolist() == want
    assert got.dtype == torch.float32


def test_1d_with_delta_one_is_plain_positions():
    assert v2pe_positions_1d(TYPES, 1.0).tolist() == list(range(len(TYPES)))


def test_mrope_hand_worked_example():
    # Each visual token sits at p + delta * (1 + offset) on its row; p = 2 before the image,
    # p = 5 before the video. Text after a block: ceil(max over the block) + 1.
    img = 2 + 0.25 * 1  # all image t/h offsets are 0
    t_row = [0, 1, 2] + [img] * 3 + [4, 5] + [5.5] * 6 + [6.0] * 6 + [8, 9]
    h_row = [0, 1, 2] + [img] * 3 + [4, 5] + ([5.5] * 3 + [6.0] * 3) * 2 + [8, 9]
    w_row = [0, 1, 2] + [2.25, 2.5, 2.75] + [4, 5] + [5.5, 6.0, 6.5] * 4 + [8, 9]
    got, next_position = v2pe_mrope_positions(TYPES, [IMAGE_GRID], [VIDEO_GRID], delta=[0.25, 0.5])
    assert got.tolist() == [t_row, h_row, w_row]
    assert next_position == 10


def test_mrope_with_delta_one_hand_worked():
    # stock layout: image block starts at 3, video block at 8, text continues at max + 1
    want_t = [0, 1, 2, 3, 3, 3, 6, 7] + [8] * 6 + [9] * 6 + [11, 12]
    want_h = [0, 1, 2, 3, 3, 3, 6, 7] + ([8] * 3 + [9] * 3) * 2 + [11, 12]
    want_w = [0, 1, 2, 3, 4, 5, 6, 7] + [8, 9, 10] * 4 + [11, 12]
    got, next_position = v2pe_mrope_positions(TYPES, [IMAGE_GRID], [VIDEO_GRID], delta=1.0)
    assert got.tolist() == [want_t, want_h, want_w] and next_position == 13


def test_mrope_width_row_of_a_line_image_is_the_1d_rule():
    types = [0, 0] + [1] * 5 + [0]
    got, _ = v2pe_mrope_positions(types, [[1, 2, 10]], delta=0.125)  # 1 x 1 x 5 after merging
    assert got[2].tolist() == v2pe_positions_1d(types, 0.125).tolist()


def test_mrope_text_after_a_long_video_follows_the_temporal_extent():
    # 4 temporal groups of 1 x 1 tokens: offsets o_t = 0..3; with delta 1/2 from p = 0:
    # 0.5, 1.0, 1.5, 2.0 on the t row, 0.5 on h and w, next text ceil(2.0) + 1 = 3.
    got, next_position = v2pe_mrope_positions([0, 2, 2, 2, 2, 0], video_grids=[[4, 2, 2]], delta=0.5)
    assert got.tolist() == [[0, 0.5, 1.0, 1.5, 2.0, 3], [0, 0.5, 0.5, 0.5, 0.5, 3], [0, 0.5, 0.5, 0.5, 0.5, 3]]
    assert next_position == 4


def test_mrope_video_time_interval_scales_temporal_offsets():
    # Qwen2.5-VL: o_t = floor(t * tokens_per_second * second_per_grid); interval 1.5 -> 0, 1, 3
    got, _ = v2pe_mrope_positions([0] + [2] * 3, video_grids=[[3, 2, 2]], delta=1.0, video_time_intervals=[1.5])
    assert got[0].tolist() == [0, 1, 2, 4]


def test_adjacent_images_are_separate_blocks():
    got, next_position = v2pe_mrope_positions([0] + [1] * 4, [[1, 2, 4], [1, 2, 4]], delta=[0.5, 0.25])
    # first image from p=0: 0.5, 1.0 (w) -> ceil 1; second from p=1: 1.25, 1.5
    assert got[2].tolist() == [0, 0.5, 1.0, 1.25, 1.5] and next_position == 3


def test_grid_mismatch_is_an_error():
    with pytest.raises(ValueError, match="more image tokens than grids"):
        v2pe_mrope_positions([0, 1, 1], [], delta=1.0)
    with pytest.raises(ValueError, match="does not fit"):
        v2pe_mrope_positions([0, 1, 1], [[1, 4, 4]], delta=1.0)
    with pytest.raises(ValueError, match="fewer deltas"):
        v2pe_positions_1d([0, 1, 0, 1], [0.5])


def test_training_deltas_are_seeded_draws_from_the_set():
    cfg = V2PEConfig(seed=7)
    a = [DeltaSampler(cfg).draw(True) for _ in range(1)]
    s1, s2 = DeltaSampler(cfg), DeltaSampler(cfg)
    draws = [s1.draw(True) for _ in range(200)]
    assert draws == [s2.draw(True) for _ in range(200)] and a[0] == draws[0]
    assert set(draws) == set(V2PE_TRAIN_DELTAS) == {1 / 2**k for k in range(9)}
    assert {s1.draw(False) for _ in range(5)} == {0.25}
    assert V2PEConfig.from_dict(cfg.to_dict()) == cfg


def test_bad_deltas_are_rejected():
    with pytest.raises(ValueError):
        V2PEConfig(inference_delta=0)
    with pytest.raises(ValueError):
        V2PEConfig(train_deltas=(1.0, 2.0))


# -- parity with transformers' get_rope_index at delta = 1 -------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir):
    from transformers import Qwen2VLForConditionalGeneration

    return Qwen2VLForConditionalGeneration.from_pretrained(tiny_model_dir).eval()


def _ids(types, config):
    lookup = {0: 100, 1: config.image_token_id, 2: config.video_token_id}
    return torch.tensor([[lookup[t] for t in types]])


def test_delta_one_equals_get_rope_index_on_the_example(tiny_model):
    types = torch.tensor([TYPES])
    stock, stock_deltas = tiny_model.model.get_rope_index(
        _ids(TYPES, tiny_model.config), types, torch.tensor([IMAGE_GRID]), torch.tensor([VIDEO_GRID])
    )
    ours, next_position = v2pe_mrope_positions(TYPES, [IMAGE_GRID], [VIDEO_GRID], delta=1.0)
    assert torch.equal(ours, stock[:, 0].float())
    assert next_position - len(TYPES) == stock_deltas.item()


def test_delta_one_equals_get_rope_index_on_random_sequences(tiny_model):
    """Images and videos with T <= max(H, W) merged units (where the two rules coincide)."""
    rng = random.Random(0)
    for _ in range(25):
        types, images, videos = [], [], []
        for _ in range(rng.randint(1, 4)):
            types += [0] * rng.randint(1, 4)
            h, w = rng.randint(1, 4), rng.randint(1, 4)
            if rng.random() < 0.5:
                images.append([1, 2 * h, 2 * w])
                types += [1] * (h * w)
            else:
                t = rng.randint(1, max(h, w))
                videos.append([t, 2 * h, 2 * w])
                types += [2] * (t * h * w)
        types += [0] * rng.randint(1, 3)
        stock, stock_deltas = tiny_model.model.get_rope_index(
            _ids(types, tiny_model.config),
            torch.tensor([types]),
            torch.tensor(images) if images else None,
            torch.tensor(videos) if videos else None,
        )
        ours, next_position = v2pe_mrope_positions(types, images, videos, delta=1.0)
        assert torch.equal(ours, stock[:, 0].float()), types
        assert next_position - len(types) == stock_deltas.item()


def test_delta_one_equals_get_rope_index_on_processor_output(tiny_model, processor):
    images = [Image.new("RGB", (56, 84), (200, 30, 30)), Image.new("RGB", (112, 56), (30, 200, 30))]
    texts = [
        "look <|vision_start|><|image_pad|><|vision_end|> and this one",
        "a longer prompt first, then <|vision_start|><|image_pad|><|vision_end|> ok",
    ]
    side, processor.tokenizer.padding_side = processor.tokenizer.padding_side, "left"
    try:
        batch = processor(text=texts, images=images, padding=True, return_tensors="pt")
    finally:
        processor.tokenizer.padding_side = side
    assert not batch["attention_mask"].all()  # the batch really is padded
    stock, _ = tiny_model.model.get_rope_index(
        batch["input_ids"], batch["mm_token_type_ids"], batch["image_grid_thw"], None, batch["attention_mask"]
    )
    grids = iter(batch["image_grid_thw"].tolist())
    for b in range(2):
        keep = batch["attention_mask"][b].bool()
        ours, _ = v2pe_mrope_positions(batch["mm_token_type_ids"][b][keep].tolist(), grids, delta=1.0)
        assert torch.equal(ours, stock[:, b, keep].float())


def test_an_empty_grid_is_an_error_not_a_hang():
    with pytest.raises(ValueError, match="no tokens"):
        v2pe_mrope_positions([0, 1], [[1, 1, 1]], delta=1.0)
