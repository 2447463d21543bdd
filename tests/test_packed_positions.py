"""Packed M-RoPE positions against transformers' own ``get_rope_index`` (tiny Qwen2-VL)."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest
import torch
from transformers import Qwen2VLForConditionalGeneration

from training.positions.apply import PositionMethodConfig, apply_position_method
from training.positions.packed import (
    StockMRoPE,
    V2PEMRoPE,
    packed_position_ids,
    position_rule_for_model,
    position_rule_from_method,
    stock_mrope_positions,
)
from training.positions.v2pe import DeltaSampler, V2PEConfig, v2pe_mrope_positions


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return Qwen2VLForConditionalGeneration.from_pretrained(tiny_model_dir).eval()


def _sample(rng: random.Random, kinds: str):
    """Token types and grids of a synthetic sample: text, then per kind an image ('i') or a
    video of several grid rows ('v'), each block wrapped in text markers, then text."""
    types, images, videos = [0] * rng.randint(1, 9), [], []
    for kind in kinds:
        rows = [(1, 2 * rng.randint(1, 4), 2 * rng.randint(1, 5))] if kind == "i" else [
            (rng.randint(1, 6), 2 * rng.randint(1, 3), 2 * rng.randint(1, 3)) for _ in range(rng.randint(1, 3))
        ]
        for t, h, w in rows:
            types += [0] + [1 if kind == "i" else 2] * (t * h * w // 4) + [0]  # vision_start .. vision_end
            (images if kind == "i" else videos).append((t, h, w))
        types += [0] * rng.randint(1, 6)
    return types, images, videos


def _rope_index(model, types, images, videos):
    """transformers' get_rope_index on one sequence -> (3, n)."""
    types_t = torch.tensor([types])
    pos, _ = model.model.get_rope_index(
        torch.zeros_like(types_t),
        mm_token_type_ids=types_t,
        image_grid_thw=torch.tensor(images) if images else None,
        video_grid_thw=torch.tensor(videos) if videos else None,
    )
    return pos[:, 0]


def _pack(samples):
    types = [t for s in samples for t in s[0]]
    images = [g for s in samples for g in s[1]]
    videos = [g for s in samples for g in s[2]]
    return types, images, videos, [len(s[0]) for s in samples]


PACKS = {
    "text": ["", "", ""],
    "images": ["i", "ii", "iii"],
    "videos": ["v", "vv"],
    "mixed": ["", "iv", "vi", "", "ivi"],
    "single": ["iv"],
}


@pytest.mark.parametrize("name", PACKS)
def test_isolated_slices_equal_get_rope_index_of_each_sample_alone(model, name):
    rng = random.Random(name)
    samples = [_sample(rng, kinds) for kinds in PACKS[name]]
    types, images, videos, lengths = _pack(samples)
    got = packed_position_ids(types, lengths, images, videos, mode="isolated")
    assert got.position_ids.dtype == torch.int64 and got.position_ids.shape == (3, len(types))
    for (a, b), s in zip(got.boundaries, samples):
        assert torch.equal(got.position_ids[:, a:b], _rope_index(model, *s))
        assert got.text_position_ids[a:b].tolist() == list(range(b - a))
    assert got.cu_seqlens.dtype == torch.int32
    assert got.cu_seqlens.tolist() == np.cumsum([0, *lengths]).tolist()
    assert got.max_seqlen == max(lengths)


@pytest.mark.parametrize("name", PACKS)
def test_concat_equals_get_rope_index_of_the_concatenated_dialogue(model, name):
    rng = random.Random("c" + name)
    samples = [_sample(rng, kinds) for kinds in PACKS[name]]
    types, images, videos, lengths = _pack(samples)
    got = packed_position_ids(types, lengths, images, videos, mode="concat")
    assert torch.equal(got.position_ids, _rope_index(model, types, images, videos))
    assert got.text_position_ids.tolist() == list(range(len(types)))
    assert got.model_position_ids().shape == (3, 1, len(types))


def test_long_video_follows_transformers_not_the_original_max_plus_one(model):
    # T = 6 temporal groups of 1 x 1: transformers continues text at start + max(H, W) = +1
    types, videos = [0, 0] + [2] * 6 + [0, 0], [(6, 2, 2)]
    got = stock_mrope_positions(types, None, videos)
    assert got.tolist() == _rope_index(model, types, [], videos).tolist()
    assert got[:, -2].tolist() == [3, 3, 3]


def test_random_packs_match_in_both_modes(model):
    rng = random.Random(7)
    for _ in range(20):
        samples = [_sample(rng, "".join(rng.choice("iv ") for _ in range(rng.randint(0, 4))).replace(" ", ""))
                   for _ in range(rng.randint(1, 6))]
        types, images, videos, lengths = _pack(samples)
        concat = packed_position_ids(types, lengths, images, videos, mode="concat")
        assert torch.equal(concat.position_ids, _rope_index(model, types, images, videos))
        iso = packed_position_ids(types, lengths, images, videos, mode="isolated")
        for (a, b), s in zip(iso.boundaries, samples):
            assert torch.equal(iso.position_ids[:, a:b], _rope_index(model, *s))


def test_isolated_text_row_is_what_transformers_reads_as_packing():
    from transformers.masking_utils import find_packed_sequence_indices
    from transformers.modeling_flash_attention_utils import prepare_fa_kwargs_from_position_ids

    rng = random.Random(3)
    samples = [_sample(rng, k) for k in ("i", "", "vi")]
    types, images, videos, lengths = _pack(samples)
    got = packed_position_ids(types, lengths, images, videos, mode="isolated")
    rows = got.model_position_ids()
    assert rows.shape == (4, 1, len(types))
    assert torch.equal(rows[1:, 0], got.position_ids)
    seq_index = find_packed_sequence_indices(rows[0])  # what sdpa/eager/flex masks are built from
    assert torch.equal(seq_index[0], got.sample_index)
    (cu_q, cu_k), (max_q, _) = prepare_fa_kwargs_from_position_ids(rows[0])  # flash-attn varlen
    assert torch.equal(cu_q, got.cu_seqlens) and int(max_q) == got.max_seqlen


def test_v2pe_isolated_and_concat_reuse_the_v2pe_rule(model, tiny_model_dir):
    rng = random.Random(11)
    samples = [_sample(rng, k) for k in ("iv", "", "ii")]
    types, images, videos, lengths = _pack(samples)
    # inference: fixed delta; each slice equals the patched model's get_rope_index alone
    patched = apply_position_method(
        Qwen2VLForConditionalGeneration.from_pretrained(tiny_model_dir).eval(),
        PositionMethodConfig(v2pe=V2PEConfig(inference_delta=0.25)),
    )
    rule = position_rule_for_model(patched)
    assert isinstance(rule, V2PEMRoPE)
    iso = packed_position_ids(types, lengths, images, videos, mode="isolated", rule=rule)
    assert iso.position_ids.dtype == torch.float32
    for (a, b), s in zip(iso.boundaries, samples):
        assert torch.equal(iso.position_ids[:, a:b], _rope_index(patched, *s))
    concat = packed_position_ids(types, lengths, images, videos, mode="concat", rule=rule)
    assert torch.equal(concat.position_ids, _rope_index(patched, types, images, videos))
    # training: one seeded draw per visual block, in sequence order, restarting at 0 per sample
    cfg = V2PEConfig(seed=5)
    train = packed_position_ids(types, lengths, images, videos, mode="isolated",
                                rule=position_rule_from_method(PositionMethodConfig(v2pe=cfg), training=True))
    sampler = DeltaSampler(cfg)
    deltas = [sampler.draw(True) for _ in range(len(images) + len(videos))]
    it_d, it_i, it_v = iter(deltas), iter(images), iter(videos)
    for (a, b), s in zip(train.boundaries, samples):
        want, _ = v2pe_mrope_positions(s[0], it_i, it_v, delta=lambda: next(it_d))
        assert torch.equal(train.position_ids[:, a:b], want)
    assert len(set(deltas)) > 1
    # model_position_ids keeps the float V2PE rows and an integer-valued text row
    rows = train.model_position_ids()
    assert rows.dtype == torch.float32 and torch.equal(rows[0, 0], train.text_position_ids.float())


def test_frequency_methods_keep_stock_positions():
    from training.positions.rope import RopeMethodConfig

    assert isinstance(position_rule_from_method(None), StockMRoPE)
    assert isinstance(position_rule_from_method(PositionMethodConfig(RopeMethodConfig("mrope++", 1024, 4096))), StockMRoPE)


def test_128k_sequence_is_fast():
    rng = random.Random(0)
    samples, n = [], 0
    while n < 128 * 1024:
        s = _sample(rng, "".join(rng.choice("iv") for _ in range(rng.randint(0, 6))))
        s = ([0] * rng.randint(0, 200) + s[0], s[1], s[2])
        samples.append(s)
        n += len(s[0])
    types, images, videos, lengths = _pack(samples)
    t0 = time.perf_counter()
    for mode in ("concat", "isolated"):
        packed_position_ids(types, lengths, images, videos, mode=mode)
    elapsed = (time.perf_counter() - t0) / 2
    assert len(images) + len(videos) > 1000
    assert elapsed < 1.0, f"{elapsed:.3f}s for {len(types)} tokens"


def test_grid_mismatches_are_clear_errors():
    with pytest.raises(ValueError, match="1 image blocks in the sequence but 2 image grid rows"):
        stock_mrope_positions([0, 1, 0], [(1, 2, 2), (1, 2, 2)])
    with pytest.raises(ValueError, match="image block 0 has 2 tokens but its grid"):
        stock_mrope_positions([0, 1, 1, 0], [(1, 2, 2)])
    with pytest.raises(ValueError, match="sum to 3 but the sequence has 4"):
        packed_position_ids([0, 0, 0, 0], [1, 2])
    with pytest.raises(ValueError, match="mode must be one of"):
        packed_position_ids([0], [1], mode="other")
