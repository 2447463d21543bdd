"""The runner on the tiny Qwen2-VL end to end: images, a multi-image haystack, videos (2 fps and
hybrid resolution), batching, failures kept as rows, and the checkpoint's position method."""

import json
import shutil

import pytest
import torch
from PIL import Image

from assets.sources.embedded.media import encode_video
from assets.video.grid import HybridConfig
from assets.video.plan import VideoSamplingConfig
from eval.items import CHOICE, YES_NO, EvalItem
from eval.runner import RunConfig, Runner
from training.positions.apply import V2PERopeIndex, apply_position_method, load_with_position_method
from training.positions.v2pe import V2PEConfig


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("runner-media")
    paths = []
    for i, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 20)]):
        p = root / f"img{i}.png"
        Image.new("RGB", (56 + 28 * (i % 2), 56), colour).save(p)
        paths.append(str(p))
    video = encode_video(root / "clip.mp4", seconds=4, fps=4, size=(64, 48))
    return paths, str(video)


@pytest.fixture(scope="module")
def runner(tiny_model_dir):
    return Runner.from_checkpoint(tiny_model_dir, "tiny", RunConfig(batch_size=3, max_new_tokens=4))


def yes_no(item_id, images, **kw):
    return EvalItem("mme", item_id, "Is there a red square? Answer yes or no.", "yes", YES_NO, images=images, **kw)


def choice(item_id, video):
    return EvalItem("videomme", item_id, "What is shown?\nA. bars\nB. a card", "B", CHOICE, {"A": "bars", "B": "a card"}, video=video, split="short")


def test_image_token_counts_equal_the_processors(runner, processor, media):
    """Our image-pad expansion gives the same input_ids as Qwen2VLProcessor on the same text."""
    paths, _ = media
    item = yes_no("x", paths[:2])
    prepared = runner.prepare(item)
    ours = runner.encode([prepared])
    theirs = processor(text=[runner.render(item)], images=prepared.images, return_tensors="pt")
    assert torch.equal(ours["input_ids"], theirs["input_ids"])
    assert torch.equal(ours["pixel_values"], theirs["pixel_values"])
    assert torch.equal(ours["mm_token_type_ids"], theirs["mm_token_type_ids"])


def test_runs_images_haystack_and_video_items_end_to_end(runner, media):
    paths, video = media
    items = [yes_no("one", paths[:1]), yes_no("four", paths), choice("vid", video), yes_no("two", paths[1:3])]
    rows = runner.run(items)
    assert [r["item_id"] for r in rows] == ["one", "four", "vid", "two"]  # input order kept
    for r, it in zip(rows, items):
        assert r["status"] in ("ok", "unparseable") and r["reason"] is None
        assert r["correct"] == (r["prediction"] == it.answer)
        assert isinstance(r["raw_output"], str) and r["n_prompt_tokens"] > 0
        assert r["model"] == "tiny" and r["n_images"] == it.n_images
    assert rows[1]["n_prompt_tokens"] > rows[0]["n_prompt_tokens"]  # four images cost more than one
    plan = json.loads(rows[2]["extra"])["video_plan"]
    assert plan["n_frames"] == 8 and len(plan["grids"]) == 1 and not plan["hybrid"]  # 4 s at 2 fps


def test_batched_and_single_runs_agree(tiny_model_dir, media):
    """Left padding must not change what greedy decoding produces."""
    paths, _ = media
    items = [yes_no("a", paths[:1]), yes_no("b", paths), yes_no("c", paths[2:])]
    batched = Runner.from_checkpoint(tiny_model_dir, "t", RunConfig(batch_size=3, max_new_tokens=4)).run(items)
    single = Runner.from_checkpoint(tiny_model_dir, "t", RunConfig(batch_size=1, max_new_tokens=4)).run(items)
    assert [r["raw_output"] for r in batched] == [r["raw_output"] for r in single]
    assert [r["n_prompt_tokens"] for r in batched] == [r["n_prompt_tokens"] for r in single]


def test_hybrid_resolution_and_fixed_frame_count(tiny_model_dir, media):
    _, video = media
    cfg = VideoSamplingConfig.fixed_count(8, min_pixels=28 * 28, max_pixels=112 * 112, hybrid=HybridConfig(2, 4, 2.0, min_frames=4))
    r = Runner.from_checkpoint(tiny_model_dir, "t", RunConfig(batch_size=2, max_new_tokens=3, video=cfg))
    rows = r.run([choice("h", video)])
    plan = json.loads(rows[0]["extra"])["video_plan"]
    assert rows[0]["status"] != "error", rows[0]["reason"]
    assert plan["hybrid"] and plan["n_frames"] == 8 and len(plan["grids"]) == 4  # 4 patches, groups of 2
    assert plan["grids"][0] != plan["grids"][1]  # high-res first patch, low-res rest


def test_failures_are_rows_with_reasons_and_do_not_sink_the_batch(runner, media, tmp_path):
    paths, _ = media
    bad_video = tmp_path / "broken.mp4"
    bad_video.write_bytes(b"not a video")
    items = [yes_no("ok", paths[:1]), yes_no("gone", [str(tmp_path / "missing.png")]), choice("broken", str(bad_video))]
    rows = runner.run(items)
    assert rows[0]["status"] in ("ok", "unparseable")
    assert rows[1]["status"] == "error" and rows[1]["reason"].startswith("unreadable_image") and not rows[1]["correct"]
    assert rows[2]["status"] == "error" and rows[2]["reason"].startswith("video_") and not rows[2]["correct"]


def test_checkpoint_position_method_is_applied(tiny_model_dir, tmp_path, media):
    """A V2PE checkpoint is evaluated with V2PE positions (and so scores differently)."""
    paths, _ = media
    ckpt = tmp_path / "v2pe"
    model = apply_position_method(load_with_position_method(tiny_model_dir), V2PEConfig(inference_delta=0.25))
    model.save_pretrained(ckpt)
    for f in tiny_model_dir.iterdir():
        if f.name not in ("config.json", "model.safetensors", "generation_config.json") and f.is_file():
            shutil.copy(f, ckpt / f.name)
    r = Runner.from_checkpoint(ckpt, "v2pe/8k", RunConfig(batch_size=1, max_new_tokens=2))
    assert isinstance(r.model.model.__dict__.get("get_rope_index"), V2PERopeIndex)
    stock = Runner.from_checkpoint(tiny_model_dir, "base", RunConfig(batch_size=1, max_new_tokens=2))
    batch = [stock.prepare(yes_no("p", paths[:2]))]
    with torch.no_grad():
        a = stock.model(**stock.encode(batch)).logits
        b = r.model(**r.encode(batch)).logits
    assert not torch.allclose(a, b)
