"""Our ChatML rendering equals the Qwen2-VL processor's own chat template, on every sample."""

import pytest

from assets.contract.chat_template import IMAGE_PAD, QWEN2_VL_SPECIAL_TOKENS, render_chatml
from assets.contract.conversation import image_part, text_part, video_part
from assets.sources.registry import SOURCES


@pytest.mark.parametrize("name", [s.name for s in SOURCES])
def test_render_equals_processor_template_on_every_conversation(normalized, processor, name):
    convs = normalized[name].conversations
    assert convs
    for conv in convs:
        expected = processor.apply_chat_template(conv.messages, tokenize=False)
        assert render_chatml(conv.messages) == expected


@pytest.mark.parametrize("gen", [False, True])
@pytest.mark.parametrize("vision_id", [False, True])
def test_render_options_and_system_prompt(processor, gen, vision_id):
    messages = [
        {"role": "system", "content": [text_part("Be brief.")]},
        {"role": "user", "content": [image_part("/x.png"), text_part("and"), video_part("/v.mp4"), image_part("/y.png")]},
        {"role": "assistant", "content": [text_part("Two images, one video.")]},
        {"role": "user", "content": "plain string content"},
    ]
    expected = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen, add_vision_id=vision_id)
    got = render_chatml(messages, add_generation_prompt=gen, add_vision_id=vision_id)
    assert got == expected
    assert got.startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    assert ("Picture 2: " in got) == vision_id


def test_tokenizer_keeps_qwen2_vl_special_tokens_whole(processor):
    tok = processor.tokenizer
    for t in QWEN2_VL_SPECIAL_TOKENS:
        ids = tok(t, add_special_tokens=False).input_ids
        assert len(ids) == 1 and tok.convert_ids_to_tokens(ids[0]) == t


def test_processor_expands_image_pads_to_the_grid(processor, normalized):
    from PIL import Image

    conv = normalized["llava_instruct"].conversations[0]
    path = conv.messages[0]["content"][0]["path"]
    image = Image.open(path).convert("RGB")
    enc = processor(text=[render_chatml(conv.messages)], images=[image], return_tensors="pt")
    t, h, w = enc["image_grid_thw"][0].tolist()
    pad_id = processor.tokenizer.convert_tokens_to_ids(IMAGE_PAD)
    assert int((enc["input_ids"][0] == pad_id).sum()) == t * h * w // 4
    assert int((enc["mm_token_type_ids"][0] == 1).sum()) == t * h * w // 4


def test_long_text_samples_are_really_long(normalized, processor):
    lengths = sorted(
        len(processor.tokenizer(render_chatml(c.messages), add_special_tokens=False).input_ids)
        for name in ("longalign_10k", "longalpaca")
        for c in normalized[name].conversations
    )
    assert sum(n > 8192 for n in lengths) >= 5
    assert sum(n > 32768 for n in lengths) >= 2
    assert lengths[0] < 8192
