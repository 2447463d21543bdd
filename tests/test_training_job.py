"""The training job on the tiny Qwen2-VL, in process: what trains, the loss, overfitting a
repeated batch, LoRA export, images through a frozen vision tower, bit-exact resume."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

from training.config import TrainConfig
from training.data import load_batch_file, save_batch_file
from training.loss import CausalLMLoss
from training.modeling import add_lora, count_params, freeze_vision, load_model, vision_module, weights_fingerprint
from training.positions.apply import load_with_position_method, read_position_method
from training.processor import load_processor
from training.state import latest_state, read_trainer_state
from training.trainer import train

MROPE = {"rope": {"method": "mrope++", "original_length": 8192, "target_length": 32768}}


def _cfg(tiny_model_dir, batch_file, out, **kw) -> TrainConfig:
    base = dict(
        model_path=str(tiny_model_dir), output_dir=str(out), batch_source=f"file:{batch_file}", stage="8k",
        method=MROPE, steps=4, learning_rate=3e-3, lr_schedule="constant", seed=0,
    )
    return TrainConfig(**{**base, **kw})


def test_only_the_llm_backbone_trains(tiny_model_dir):
    cfg = TrainConfig(model_path=str(tiny_model_dir), output_dir="unused", method=MROPE)
    model = load_model(cfg, torch.device("cpu"))
    total = sum(p.numel() for p in model.parameters())  # tied lm_head counted once by parameters()
    vision = sum(p.numel() for p in model.model.visual.parameters())
    counts = freeze_vision(model)
    assert counts.vision == vision > 0 and counts.frozen == vision
    assert counts.trainable == total - vision == sum(p.numel() for p in model.model.language_model.parameters())
    assert not any(p.requires_grad for p in model.model.visual.parameters())  # ViT blocks and merger
    assert all(p.requires_grad for p in model.model.language_model.parameters())
    assert vision_module(model).merger is model.model.visual.merger

    lora_cfg = TrainConfig(model_path=str(tiny_model_dir), output_dir="unused", lora=True, lora_rank=4)
    peft_model = add_lora(model, lora_cfg)
    lora = count_params(peft_model)
    text = model.config.text_config
    h, kv, inter, layers = text.hidden_size, text.num_key_value_heads * (text.hidden_size // text.num_attention_heads), text.intermediate_size, text.num_hidden_layers
    per_layer = 4 * ((h + h) + (h + kv) + (h + kv) + (h + h)) + 4 * ((h + inter) * 2 + (inter + h))
    assert lora.trainable == layers * per_layer  # r * (in + out) for q, k, v, o, gate, up, down
    names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n and "visual" not in n for n in names)


def test_chunked_loss_equals_the_models_own_loss(tiny_model_dir, train_batch_file):
    from transformers import Qwen2VLForConditionalGeneration

    model = Qwen2VLForConditionalGeneration.from_pretrained(tiny_model_dir)
    batch = load_batch_file(str(train_batch_file))[1]
    reference = model(**batch, use_cache=False).loss
    reference.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    loss = CausalLMLoss(model, chunk_size=5)(**dict(batch))  # several chunks
    loss.backward()
    assert float(loss) == pytest.approx(float(reference), rel=1e-6)
    for n, p in model.named_parameters():
        if n in ref_grads:
            torch.testing.assert_close(p.grad, ref_grads[n], rtol=1e-4, atol=1e-6)


def test_loss_decreases_on_a_repeated_batch(tiny_model_dir, train_batch_file, tmp_path):
    batch = load_batch_file(str(train_batch_file))[1]
    save_batch_file([batch], tmp_path / "one.pt")
    cfg = _cfg(tiny_model_dir, tmp_path / "one.pt", tmp_path / "run", steps=30, log_every=10)
    result = train(cfg)
    losses = [v for _, v in result.losses]
    assert [s for s, _ in result.losses] == list(range(1, 31))
    assert losses[-1] < 0.3 * losses[0], losses  # random init: ~ln(vocab) = 8.3 at the start
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 4.0
    assert result.tokens == 30 * batch["input_ids"].numel()
    assert result.params["frozen"] == result.params["vision"] > 0


def test_lora_run_with_images_exports_a_plain_model_and_leaves_vision_untouched(tiny_model_dir, tmp_path, image_batch):
    batch_file = tmp_path / "image.pt"
    save_batch_file([image_batch], batch_file)
    cfg = _cfg(tiny_model_dir, batch_file, tmp_path / "lora", steps=3, lora=True, lora_rank=4, learning_rate=1e-2)
    result = train(cfg)
    assert result.params["trainable"] < result.params["language"] // 4

    base = load_file(str(tiny_model_dir / "model.safetensors"))
    final = load_file(str(cfg.final_dir / "model.safetensors"))
    assert set(final) == set(base)  # merged: no lora_A / lora_B keys left
    for name, value in base.items():
        if ".visual." in name or name.startswith("model.visual") or "visual." in name:
            assert torch.equal(final[name], value), name
    changed = [n for n in base if "q_proj.weight" in n and not torch.equal(final[n], base[n])]
    assert changed  # the merged LoRA delta is in the LLM weights

    model = load_with_position_method(cfg.final_dir)
    assert read_position_method(model.config).to_dict()["rope"]["method"] == "mrope++"
    assert weights_fingerprint(model) == result.weights_fingerprint
    assert type(load_processor(cfg.final_dir)).__name__.endswith("Qwen2VLProcessor")


def test_resume_continues_the_step_counter_and_is_bit_exact(tiny_model_dir, train_batch_file, tmp_path):
    straight = train(_cfg(tiny_model_dir, train_batch_file, tmp_path / "a", steps=4, save_every=2, lr_schedule="cosine"))

    out = tmp_path / "b"
    cfg = _cfg(tiny_model_dir, train_batch_file, out, steps=4, save_every=2, lr_schedule="cosine")
    train(cfg)
    # simulate a kill after step 2: only step_2's state and no checkpoint remain
    shutil.rmtree(cfg.final_dir)
    shutil.rmtree(out / "state" / "step_4")
    assert latest_state(cfg.state_root).name == "step_2"
    resumed = train(cfg)
    assert resumed.start_step == 2 and resumed.resumed_from.endswith("step_2")
    assert [s for s, _ in resumed.losses] == [1, 2, 3, 4]
    assert [v for _, v in resumed.losses] == pytest.approx([v for _, v in straight.losses], rel=1e-6)
    assert [s for s, _ in resumed.lrs] == [1, 2, 3, 4]
    assert [v for _, v in resumed.lrs] == pytest.approx([v for _, v in straight.lrs])  # the schedule continued
    # the token count covers the whole run, not only the two resumed steps
    assert resumed.tokens == straight.tokens and 0 < resumed.run_tokens < resumed.tokens
    assert resumed.weights_fingerprint == straight.weights_fingerprint  # same weights as never interrupted
    assert read_trainer_state(latest_state(cfg.state_root)).step == 4

    changed = _cfg(tiny_model_dir, train_batch_file, out, steps=4, save_every=2, learning_rate=1e-3)
    shutil.rmtree(cfg.final_dir)
    fresh = train(changed)  # another configuration never resumes this state
    assert fresh.start_step == 0
