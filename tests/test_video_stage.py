"""The video_frames stage on the embedded sample, and exact token counts."""

import copy
import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assets.contract.chat_template import render_chatml
from assets.contract.conversation import CONVERSATION_SCHEMA
from assets.tokens.count import TokenCounter, count_table, video_token_mismatches
from assets.video.decode import baseline_frames
from assets.video.frames import VideoFramesConfig, read_frames, run_video_frames, video_refs
from assets.video.inputs import expand_videos
from assets.video.plan import VideoSamplingConfig

VIDEO_SOURCES = ("sharegpt4v", "llava_video", "mlvu")


@pytest.fixture(scope="module")
def stage(normalized, tmp_path_factory):
    """Video parts of three sources plus a corrupt and an empty video, sampled once."""
    out = tmp_path_factory.mktemp("video-frames")
    rows = [c.to_row() for s in VIDEO_SOURCES for c in normalized[s].conversations]
    good = rows[0]["messages"][0]["content"]
    video = next(p for m in rows[0]["messages"] for p in m["content"] if p["type"] == "video")
    bad_dir = out.parent / "bad-media"
    bad_dir.mkdir(exist_ok=True)
    data = open(video["path"], "rb").read()
    (bad_dir / "cut.mp4").write_bytes(data[: len(data) // 4])
    (bad_dir / "zero.mp4").write_bytes(b"")
    for k, name in enumerate(("cut.mp4", "zero.mp4")):
        bad = json.loads(json.dumps(rows[0]))
        bad["sample_id"] = f"bad{k}"
        for m in bad["messages"]:
            for p in m["content"]:
                if p["type"] == "video":
                    p["path"] = str(bad_dir / name)
        rows.append(bad)
    assert good
    table = pa.Table.from_pylist(rows, schema=CONVERSATION_SCHEMA)
    refs = video_refs(table)
    result = run_video_frames(refs, out, VideoFramesConfig(workers=2))
    return out, refs, result, rows


def test_every_video_part_is_sampled_or_rejected_with_reason(stage):
    out, refs, result, _ = stage
    assert len(result.samples) == len(refs)
    rejected = {r["sample_id"]: r["reason"] for r in result.rejected}
    assert rejected == {"bad0": "unreadable", "bad1": "empty_file"}
    videos = pq.read_table(out / "videos.parquet").to_pylist()
    assert {v["status"] for v in videos} == {"ok", "rejected"}
    mlvu = [v for v in videos if "movie101" in v["path"]]
    assert len(mlvu) == 2 and all(v["hybrid"] == json.dumps([4, 240, 3.0]) for v in mlvu)  # 620 and 740 frames
    assert {v["n_frames"] for v in mlvu} == {620, 740}
    assert pq.read_table(out / "rejected.parquet").num_rows == 2


def test_stored_frames_equal_the_baseline_and_carry_the_plan(stage):
    out, _, result, _ = stage
    video = next(v for v in result.videos if v["status"] == "ok" and not v["hybrid"])
    plan, frames = read_frames(video["frames_file"])
    assert len(frames) == plan["n_frames"] == video["n_frames"]
    ref = baseline_frames(video["path"], plan["indices"], [tuple(s) for s in plan["sizes"]])
    assert all(np.array_equal(a, b) for a, b in zip(ref, frames))
    table = pq.read_table(video["frames_file"], columns=["frame_index", "timestamp"])
    assert table.column("frame_index").to_pylist() == plan["indices"]
    assert table.column("timestamp").to_pylist() == pytest.approx([i / plan["video_fps"] for i in plan["indices"]])


def test_rerun_is_incremental(stage, tmp_path):
    out, refs, first, _ = stage
    before = {p.name: p.stat().st_mtime_ns for p in (out / "frames").glob("*.parquet")}
    again = run_video_frames(refs, out, VideoFramesConfig(workers=1))
    assert all(v["cached"] for v in again.videos)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "frames").glob("*.parquet")} == before
    # same bytes elsewhere: same key, still cached; other settings: a new key
    moved = tmp_path / "copy.mp4"
    shutil.copy(refs[0].path, moved)
    from assets.video.frames import sample_to_shard

    row = sample_to_shard(str(moved), VideoSamplingConfig(), str(out / "frames"))
    assert row["cached"] and row["video_key"] == first.videos[0]["video_key"]
    other = sample_to_shard(str(moved), VideoSamplingConfig(fps=1.0), str(out / "frames"))
    assert not other["cached"] and other["video_key"] != row["video_key"]


def test_a_changed_resize_re_decodes_and_an_unchanged_one_does_not(stage, tmp_path):
    from assets.video.frames import sample_to_shard

    _, refs, _, _ = stage
    path, frames_dir = refs[0].path, tmp_path / "frames"
    frames_dir.mkdir()
    torch_cfg, pil_cfg = VideoSamplingConfig(), VideoSamplingConfig(resize="pil")
    # the PNG store, whose stored pixels this test compares (a plan shard has the same key, its own suffix)
    first = sample_to_shard(path, torch_cfg, str(frames_dir), store="png")
    shard = frames_dir / f"{first['video_key']}.parquet"
    stamp = shard.stat().st_mtime_ns
    same = sample_to_shard(path, torch_cfg, str(frames_dir), store="png")
    assert not first["cached"] and same["cached"] and same["video_key"] == first["video_key"]
    assert shard.stat().st_mtime_ns == stamp  # not rewritten
    pil = sample_to_shard(path, pil_cfg, str(frames_dir), store="png")
    assert not pil["cached"] and pil["video_key"] != first["video_key"]
    assert sample_to_shard(path, pil_cfg, str(frames_dir), store="png")["cached"]
    plan, torch_frames = read_frames(first["frames_file"])
    _, pil_frames = read_frames(pil["frames_file"])
    idx, sizes = plan["indices"], [tuple(x) for x in plan["sizes"]]
    assert all(np.array_equal(a, b) for a, b in zip(torch_frames, baseline_frames(path, idx, sizes, resize="torch")))
    assert all(np.array_equal(a, b) for a, b in zip(pil_frames, baseline_frames(path, idx, sizes, resize="pil")))
    assert any(not np.array_equal(a, b) for a, b in zip(torch_frames, pil_frames))
    assert sorted(p.name for p in frames_dir.glob("*.parquet")) == sorted([shard.name, f"{pil['video_key']}.parquet"])


def _plans(result):
    videos = {v["video_key"]: v for v in result.videos}
    out = {}
    for s in result.samples:
        v = videos[s["video_key"]]
        out[(s["sample_id"], s["video_no"])] = json.loads(v["grids"]) if v["status"] == "ok" else (v["reason"], v["detail"])
    return out


def test_video_token_counts_equal_tokenised_expansion(stage, processor):
    _, _, result, rows = stage
    counter = TokenCounter(processor, _plans(result))
    counts, rejected = count_table(rows, counter)
    assert {r["sample_id"]: r["reason"] for r in rejected} == {"bad0": "video_unreadable", "bad1": "video_empty_file"}
    plans = _plans(result)
    for row, c in zip(rows, counts):
        n_videos = sum(p["type"] == "video" for m in row["messages"] for p in m["content"])
        text = expand_videos(render_chatml(row["messages"]), [plans[(row["sample_id"], k)] for k in range(n_videos)])
        ids = processor.tokenizer(text)["input_ids"]
        assert c["n_tokens"] == len(ids)
        assert c["n_video_tokens"] == ids.count(processor.tokenizer.convert_tokens_to_ids("<|video_pad|>"))
        assert c["n_text_tokens"] + c["n_video_tokens"] == c["n_tokens"]


def test_token_counts_agree_with_the_frame_tables_and_a_mismatch_is_caught(stage, processor):
    out, _, result, rows = stage
    counts, _ = count_table(rows, TokenCounter(processor, _plans(result)))
    samples = pq.read_table(out / "samples.parquet").to_pylist()
    videos = pq.read_table(out / "videos.parquet").to_pylist()
    with_video = [c for c in counts if c["n_videos"]]
    assert with_video and video_token_mismatches(counts, samples, videos) == []
    tampered = [dict(c) for c in counts]
    tampered[0]["n_video_tokens"] += 1
    bad = video_token_mismatches(tampered, samples, videos)
    assert [b["sample_id"] for b in bad] == [tampered[0]["sample_id"]]
    assert bad[0]["frames_visual_tokens"] == counts[0]["n_video_tokens"]
    dropped = [s for s in samples if s["sample_id"] != with_video[-1]["sample_id"]]  # frames lost for one sample
    assert [b["sample_id"] for b in video_token_mismatches(counts, dropped, videos)] == [with_video[-1]["sample_id"]]


@pytest.mark.parametrize("source", ["llava_instruct", "mmdu", "mantis", "longalpaca"])
def test_image_and_text_token_counts_equal_the_processor(normalized, processor, source):
    from PIL import Image

    counter = TokenCounter(processor, {})
    for conv in normalized[source].conversations[:4]:
        row = conv.to_row()
        c = counter.count(row)
        paths = [p["path"] for m in row["messages"] for p in m["content"] if p["type"] == "image"]
        images = [Image.open(p).convert("RGB") for p in paths] or None
        ref = processor(text=[render_chatml(row["messages"])], images=images, return_tensors="np")
        assert c["n_tokens"] == ref["input_ids"].shape[1]
        n_pad = int((ref["input_ids"] == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")).sum())
        assert c["n_image_tokens"] == n_pad and c["n_images"] == len(paths)


def test_a_missing_image_is_rejected_not_counted(normalized, processor, tmp_path):
    # a deep copy: to_row shares the messages with the session-wide fixture
    row = copy.deepcopy(next(c.to_row() for c in normalized["llava_instruct"].conversations))
    for m in row["messages"]:
        for p in m["content"]:
            if p["type"] == "image":
                p["path"] = str(tmp_path / "gone.png")
    counts, rejected = count_table([row], TokenCounter(processor, {}))
    assert not counts and rejected[0]["reason"] == "unreadable_image"


def test_contact_sheet_shows_hybrid_videos_first_and_every_source(stage):
    import io

    from PIL import Image

    from assets.contract.markdown import MARKDOWN_IMAGE_BYTES, shrink_png
    from assets.defs.video import sources_of_videos
    from assets.video.contact_sheet import choose_videos, contact_sheet_png, sampled_frames

    _, _, result, _ = stage
    sources = sources_of_videos(result.samples)
    chosen = choose_videos(result.videos, sources, limit=4)
    assert [bool(v["hybrid"]) for v in chosen[:2]] == [True, True]  # the two MLVU videos (> 512 frames)
    assert {sources[v["video_key"]] for v in chosen} == set(VIDEO_SOURCES)
    assert all(v["status"] == "ok" for v in chosen)  # the corrupt and empty files are never drawn
    frames = sampled_frames(chosen[0]["frames_file"], 5)
    assert len(frames) == 5 and frames[0][0] == 0.0 and frames[-1][0] == max(t for t, _, _ in frames)
    png = contact_sheet_png(result.videos, sources, per_video=5, limit=4)
    image = Image.open(io.BytesIO(png))
    assert image.size[0] >= 900
    small = shrink_png(png)
    assert len(small) <= MARKDOWN_IMAGE_BYTES and Image.open(io.BytesIO(small)).size[0] >= 900
    assert contact_sheet_png([v for v in result.videos if v["status"] != "ok"], sources) is None
