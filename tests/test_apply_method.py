"""Applying a method to a real (tiny, random) Qwen2-VL: stock parity, transformers' own rope
types as references, generation against a no-cache recomputation, and save/reload."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from transformers import AutoConfig, Qwen2VLForConditionalGeneration

from training.positions.apply import (
    CONFIG_KEY,
    PositionMethodConfig,
    V2PERopeIndex,
    apply_position_method,
    find_text_rotary,
    load_with_position_method,
    read_position_method,
)
from training.positions.rope import RopeMethodConfig, RotaryShape, compute_frequencies
from training.positions.v2pe import DeltaSampler, V2PEConfig, v2pe_mrope_positions

L_V, L_TARGET = 1024, 4096  # s = 4
TINY_SHAPE = RotaryShape(head_dim=16, base=1e6, mrope_section=(2, 3, 3))  # training.tiny_model defaults


def _load(path, config=None):
    kwargs = {"config": config} if config is not None else {}
    return Qwen2VLForConditionalGeneration.from_pretrained(path, **kwargs).eval()


@pytest.fixture(scope="module")
def inputs(processor):
    image = Image.new("RGB", (84, 112), (40, 160, 90))
    text = "describe <|vision_start|><|image_pad|><|vision_end|> the picture in a few words"
    return processor(text=[text], images=[image], return_tensors="pt")


@pytest.fixture(scope="module")
def stock_logits(tiny_model_dir, inputs):
    with torch.no_grad():
        return _load(tiny_model_dir)(**inputs).logits


def _logits(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits


METHODS = {
    "none": PositionMethodConfig(RopeMethodConfig("none")),
    "base": PositionMethodConfig(RopeMethodConfig("base", new_base=5e6)),
    "pi": PositionMethodConfig(RopeMethodConfig("pi", L_V, L_TARGET)),
    "ntk": PositionMethodConfig(RopeMethodConfig("ntk", L_V, L_TARGET)),
    "yarn": PositionMethodConfig(RopeMethodConfig("yarn", L_V, L_TARGET)),
    "mrope++": PositionMethodConfig(RopeMethodConfig("mrope++", L_V, L_TARGET)),
    "v2pe": PositionMethodConfig(v2pe=V2PEConfig()),
    "mrope++ + v2pe": PositionMethodConfig(RopeMethodConfig("mrope++", L_V, L_TARGET), V2PEConfig(inference_delta=0.5)),
}


def test_none_is_bit_identical_to_the_stock_model(tiny_model_dir, inputs, stock_logits):
    model = _load(tiny_model_dir)
    stock_freq = find_text_rotary(model).inv_freq.clone()
    apply_position_method(model, RopeMethodConfig("none"))
    assert torch.equal(find_text_rotary(model).inv_freq, stock_freq)
    assert torch.equal(_logits(model, inputs), stock_logits)


@pytest.mark.parametrize(
    "method,rope_parameters",
    [
        ("pi", {"rope_type": "linear", "factor": L_TARGET / L_V}),
        ("yarn", {"rope_type": "yarn", "factor": L_TARGET / L_V, "original_max_position_embeddings": L_V}),
    ],
)
def test_pi_and_yarn_equal_transformers_own_rope_types(tiny_model_dir, inputs, stock_logits, method, rope_parameters):
    """Reference: the same checkpoint loaded with rope_type linear / yarn in its config."""
    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.text_config.rope_parameters = {**config.text_config.rope_parameters, **rope_parameters}
    reference = _load(tiny_model_dir, config)
    model = apply_position_method(_load(tiny_model_dir), RopeMethodConfig(method, L_V, L_TARGET))
    ours, theirs = find_text_rotary(model), find_text_rotary(reference)
    torch.testing.assert_close(ours.inv_freq, theirs.inv_freq, rtol=1e-6, atol=0)
    assert ours.attention_scaling == pytest.approx(theirs.attention_scaling)
    torch.testing.assert_close(_logits(model, inputs), _logits(reference, inputs), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(_logits(model, inputs), stock_logits)


@pytest.mark.parametrize("name", ["base", "ntk", "mrope++"])
def test_buffers_carry_the_method(tiny_model_dir, inputs, stock_logits, name):
    method = METHODS[name]
    model = apply_position_method(_load(tiny_model_dir), method)
    rotary = find_text_rotary(model)
    want = compute_frequencies(method.rope, TINY_SHAPE).inv_freq
    assert torch.equal(rotary.inv_freq, want) and torch.equal(rotary.original_inv_freq, want)
    assert rotary.attention_scaling == 1.0
    assert not torch.allclose(_logits(model, inputs), stock_logits)


def _reference_scores(model, inputs, new_tokens, delta):
    """Logits of each generated step from full, cache-free forwards with explicit positions."""
    ids = inputs["input_ids"]
    types = inputs["mm_token_type_ids"][0].tolist()
    grids = inputs["image_grid_thw"].tolist()
    scores = []
    for k in range(len(new_tokens)):
        seq = torch.cat([ids, torch.tensor([new_tokens[:k]], dtype=ids.dtype)], dim=1)
        seq_types = types + [0] * k
        positions, _ = v2pe_mrope_positions(seq_types, grids, delta=delta)
        with torch.no_grad():
            out = model(
                input_ids=seq,
                attention_mask=torch.ones_like(seq),
                mm_token_type_ids=torch.tensor([seq_types]),
                pixel_values=inputs["pixel_values"],
                image_grid_thw=inputs["image_grid_thw"],
                position_ids=positions[:, None, :],
                use_cache=False,
            )
        scores.append(out.logits[0, -1])
    return torch.stack(scores)


@pytest.mark.parametrize("name", list(METHODS))
def test_generation_matches_a_cache_free_recomputation(tiny_model_dir, inputs, name):
    """Prefill and decode positions (incl. rope deltas) agree with the method's own rule."""
    method = METHODS[name]
    model = apply_position_method(_load(tiny_model_dir), method)
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False, output_scores=True, return_dict_in_generate=True)
    new_tokens = out.sequences[0, inputs["input_ids"].shape[1] :].tolist()
    assert len(new_tokens) == 3
    delta = method.v2pe.inference_delta if method.v2pe else 1.0
    want = _reference_scores(model, inputs, new_tokens, delta)
    torch.testing.assert_close(torch.stack(out.scores)[:, 0], want, rtol=1e-4, atol=1e-5)
    if method.v2pe:  # and the check can fail: stock positions give other scores
        stock = _reference_scores(model, inputs, new_tokens, 1.0)
        assert not torch.allclose(torch.stack(out.scores)[:, 0], stock, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["v2pe", "mrope++ + v2pe", "yarn"])
def test_cached_decoding_without_position_ids_uses_the_rope_deltas(tiny_model_dir, inputs, name):
    """The path ``generate`` does not take in transformers 5: the model derives decode
    positions from ``rope_deltas`` stored at prefill (a hand-written decode loop). The decode
    steps pass no attention mask: transformers 5.23 builds positions for the whole mask there."""
    method = METHODS[name]
    model = apply_position_method(_load(tiny_model_dir), method)
    with torch.no_grad():
        out = model(**inputs, use_cache=True)
        tokens, scores, cache = [], [out.logits[0, -1]], out.past_key_values
        for _ in range(2):
            tokens.append(int(scores[-1].argmax()))
            out = model(
                input_ids=torch.tensor([[tokens[-1]]]),
                past_key_values=cache,
                mm_token_type_ids=torch.zeros(1, 1, dtype=torch.long),
                use_cache=True,
            )
            scores.append(out.logits[0, -1])
            cache = out.past_key_values
    tokens.append(int(scores[-1].argmax()))
    delta = method.v2pe.inference_delta if method.v2pe else 1.0
    want = _reference_scores(model, inputs, tokens, delta)
    torch.testing.assert_close(torch.stack(scores), want, rtol=1e-4, atol=1e-5)


def test_v2pe_draws_deltas_in_training_and_fixes_them_in_eval(tiny_model_dir, inputs):
    cfg = V2PEConfig(seed=3)
    model = apply_position_method(_load(tiny_model_dir), cfg)
    args = (inputs["input_ids"], inputs["mm_token_type_ids"], inputs["image_grid_thw"], None, inputs["attention_mask"])
    types, grids = inputs["mm_token_type_ids"][0].tolist(), inputs["image_grid_thw"].tolist()

    model.eval()
    got, _ = model.model.get_rope_index(*args)
    assert torch.equal(got[:, 0], v2pe_mrope_positions(types, grids, delta=0.25)[0])

    model.train()
    sampler = DeltaSampler(cfg)
    for _ in range(4):
        got, deltas = model.model.get_rope_index(*args)
        want, next_position = v2pe_mrope_positions(types, grids, delta=sampler.draw(True))
        assert torch.equal(got[:, 0], want) and deltas.item() == next_position - len(types)

    # a training step runs through the V2PE positions and produces gradients
    model.zero_grad()
    loss = model(**inputs, labels=inputs["input_ids"]).loss
    loss.backward()
    assert torch.isfinite(loss) and model.lm_head.weight.grad is not None


@pytest.mark.parametrize("name", ["yarn", "mrope++ + v2pe"])
def test_save_and_reload_restore_the_method(tiny_model_dir, inputs, tmp_path, name):
    model = apply_position_method(_load(tiny_model_dir), METHODS[name])
    before = _logits(model, inputs)
    model.save_pretrained(tmp_path)

    reloaded = load_with_position_method(tmp_path).eval()
    assert read_position_method(reloaded.config) == METHODS[name]
    assert torch.equal(_logits(reloaded, inputs), before)

    plain = _load(tmp_path)  # the stock loader keeps the record but not the behaviour
    assert getattr(plain.config, CONFIG_KEY) == METHODS[name].to_dict()
    assert not torch.allclose(_logits(plain, inputs), before)


def test_applying_again_replaces_rather_than_stacks(tiny_model_dir, inputs, stock_logits):
    model = _load(tiny_model_dir)
    apply_position_method(model, METHODS["mrope++ + v2pe"])
    assert isinstance(model.model.get_rope_index, V2PERopeIndex)
    apply_position_method(model, METHODS["pi"])
    apply_position_method(model, RopeMethodConfig("none"))
    assert "get_rope_index" not in vars(model.model)
    assert torch.equal(_logits(model, inputs), stock_logits)


def test_runtime_rope_types_are_refused(tiny_model_dir):
    model = _load(tiny_model_dir)
    model.config.text_config.rope_parameters = {**model.config.text_config.rope_parameters, "rope_type": "dynamic"}
    with pytest.raises(ValueError, match="recomputes frequencies"):
        apply_position_method(model, RopeMethodConfig("pi", L_V, L_TARGET))


# -- Qwen2.5-VL ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qwen25():
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": 64,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 0,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
        },
        vision_config={
            "depth": 1,
            "hidden_size": 32,
            "out_hidden_size": 64,
            "intermediate_size": 64,
            "num_heads": 2,
            "window_size": 56,
            "fullatt_block_indexes": [0],
            "tokens_per_second": 1,
        },
        image_token_id=60,
        video_token_id=61,
        vision_start_token_id=62,
        vision_end_token_id=63,
    )
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    ids = torch.tensor([[2, 3, 62] + [60] * 4 + [63, 4, 62] + [61] * 8 + [63, 5, 6]])
    types = torch.zeros_like(ids)
    types[ids == 60], types[ids == 61] = 1, 2
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "mm_token_type_ids": types,
        "pixel_values": torch.randn(16, 3 * 2 * 14 * 14),
        "image_grid_thw": torch.tensor([[1, 4, 4]]),
        "pixel_values_videos": torch.randn(32, 3 * 2 * 14 * 14),
        "video_grid_thw": torch.tensor([[2, 4, 4]]),
        "second_per_grid_ts": torch.tensor([1.0]),  # 1 token/s * 1 s: temporal step 1 (integral: see
        # transformers PR 48669, fractional steps are truncated before multiplying in 5.17)
    }
    return model, batch


def test_qwen25_v2pe_at_delta_one_equals_its_get_rope_index(qwen25):
    model, batch = qwen25
    keys = ("input_ids", "mm_token_type_ids", "image_grid_thw", "video_grid_thw", "attention_mask")
    args = {k: batch[k] for k in (*keys, "second_per_grid_ts")}
    stock, stock_deltas = model.model.get_rope_index(**args)
    apply_position_method(model, V2PEConfig(inference_delta=1.0))
    try:
        ours, deltas = model.model.get_rope_index(**args)
        assert torch.equal(ours, stock.float()) and torch.equal(deltas, stock_deltas)
    finally:
        apply_position_method(model, RopeMethodConfig("none"))


def test_qwen25_accepts_every_method_and_generates(qwen25):
    model, batch = qwen25
    try:
        for name, method in METHODS.items():
            apply_position_method(model, method)
            want = compute_frequencies(method.rope, TINY_SHAPE).inv_freq
            assert torch.equal(find_text_rotary(model).inv_freq, want), name
            out = model.generate(**batch, max_new_tokens=3, do_sample=False)
            assert out.shape[1] == batch["input_ids"].shape[1] + 3, name
    finally:
        apply_position_method(model, RopeMethodConfig("none"))


def test_throughput_benchmark_runs_on_a_tiny_shape(capsys):
    import json

    from benchmarks.rope_throughput import main

    assert main(["--seq-len", "160", "--images", "1", "--steps", "1", "--warmup", "0", "--rounds", "1"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["method"] for r in rows] == ["stock", "pi", "ntk", "yarn", "mrope++", "v2pe"]
    assert all(r["tokens_per_s"] > 0 for r in rows)
