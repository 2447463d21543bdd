"""The frame stores of video_frames (png, webp, plan): identical frames, honest cache keys,
and a plan shard that refuses a changed source instead of training on other pixels."""

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assets.contract.conversation import CONVERSATION_SCHEMA
from assets.video.decode import baseline_frames
from assets.video.frames import (
    FRAME_STORES,
    PLAN_FRAME_SCHEMA,
    FramesUnavailable,
    VideoFramesConfig,
    frame_digest,
    load_frames,
    run_video_frames,
    sample_to_shard,
    shard_plan,
    video_refs,
)
from assets.video.grid import HybridConfig
from assets.video.plan import VideoSamplingConfig


@pytest.fixture(scope="module")
def video(normalized):
    rows = [normalized["sharegpt4v"].conversations[0].to_row()]
    return video_refs(pa.Table.from_pylist(rows, schema=CONVERSATION_SCHEMA))[0].path


@pytest.fixture(scope="module")
def shards(video, tmp_path_factory):
    """The same video in every store, one frames folder."""
    frames_dir = tmp_path_factory.mktemp("stores")
    return frames_dir, {s: sample_to_shard(video, VideoSamplingConfig(), str(frames_dir), store=s) for s in FRAME_STORES}


def test_every_store_gives_back_the_same_frames_as_the_reference_decode(video, shards):
    _, rows = shards
    plan, png = load_frames(rows["png"]["frames_file"])
    reference = baseline_frames(video, plan["indices"], [tuple(s) for s in plan["sizes"]])
    assert len(png) == plan["n_frames"] == len(plan["indices"]) > 2 and all(np.array_equal(a, b) for a, b in zip(png, reference))
    for store in ("webp", "plan"):
        got_plan, frames = load_frames(rows[store]["frames_file"])
        assert got_plan["frame_store"] == store and got_plan["indices"] == plan["indices"]
        assert len(frames) == len(png) and all(np.array_equal(a, b) for a, b in zip(frames, png)), store
    # a plan shard keeps a digest per frame, no pixels: kilobytes
    plan_file = rows["plan"]["frames_file"]
    table = pq.read_table(plan_file)
    assert table.schema.remove_metadata() == PLAN_FRAME_SCHEMA
    assert table.column("digest").to_pylist() == [frame_digest(f) for f in png]
    assert pq.ParquetFile(plan_file).metadata.num_rows == len(png)
    sizes = {s: __import__("os").path.getsize(r["frames_file"]) for s, r in rows.items()}
    assert sizes["plan"] < 10_000 < sizes["png"] and sizes["webp"] < 1.2 * sizes["png"]


def test_the_store_is_part_of_the_cache_key(video, shards):
    frames_dir, rows = shards
    assert len({r["video_key"] for r in rows.values()}) == 1  # same video, same sampling
    assert len({r["frames_file"] for r in rows.values()}) == 3  # one shard per store
    stamps = {p.name: p.stat().st_mtime_ns for p in frames_dir.glob("*.parquet")}
    for store in FRAME_STORES:  # unchanged store: cached, nothing rewritten
        again = sample_to_shard(video, VideoSamplingConfig(), str(frames_dir), store=store)
        assert again["cached"] and again["frames_file"] == rows[store]["frames_file"] and again["frame_store"] == store
    assert {p.name: p.stat().st_mtime_ns for p in frames_dir.glob("*.parquet")} == stamps
    # a store changed under a shard's name is not trusted as the other store
    fresh = frames_dir.parent / "fresh"
    fresh.mkdir()
    png = sample_to_shard(video, VideoSamplingConfig(), str(fresh), store="png")
    shutil.copy(png["frames_file"], fresh / (png["video_key"] + ".plan.parquet"))
    plan = sample_to_shard(video, VideoSamplingConfig(), str(fresh), store="plan")
    assert not plan["cached"] and shard_plan(plan["frames_file"])["frame_store"] == "plan"


def test_the_stage_re_materialises_when_the_store_changes(normalized, tmp_path):
    rows = [normalized["sharegpt4v"].conversations[0].to_row(), normalized["llava_video"].conversations[0].to_row()]
    refs = video_refs(pa.Table.from_pylist(rows, schema=CONVERSATION_SCHEMA))
    out = tmp_path / "video_frames"
    first = run_video_frames(refs, out, VideoFramesConfig(workers=2, frame_store="plan"))
    assert not any(v["cached"] for v in first.videos) and {v["frame_store"] for v in first.videos} == {"plan"}
    assert all(v["cached"] for v in run_video_frames(refs, out, VideoFramesConfig(workers=1)).videos)  # plan is the default
    png = run_video_frames(refs, out, VideoFramesConfig(workers=2, frame_store="png"))
    assert not any(v["cached"] for v in png.videos) and {v["frame_store"] for v in png.videos} == {"png"}
    assert [v["video_key"] for v in png.videos] == [v["video_key"] for v in first.videos]
    assert pq.read_table(out / "videos.parquet").column("frame_store").to_pylist() == ["png"] * len(png.videos)
    with pytest.raises(ValueError, match="frame_store must be one of"):
        VideoFramesConfig(frame_store="jpeg")


def test_a_hybrid_plan_decodes_to_the_png_frames(video, tmp_path):
    cfg = VideoSamplingConfig(hybrid=HybridConfig(4, 24, 3, min_frames=0))
    rows = {s: sample_to_shard(video, cfg, str(tmp_path), store=s) for s in ("png", "plan")}
    assert rows["plan"]["hybrid"] and rows["plan"]["grids"] == rows["png"]["grids"]
    _, png = load_frames(rows["png"]["frames_file"])
    _, planned = load_frames(rows["plan"]["frames_file"], workers=1, decoder="decord")
    assert len({f.shape for f in png}) > 1 and all(np.array_equal(a, b) for a, b in zip(planned, png))


def test_a_plan_shard_refuses_a_changed_or_missing_source(video, tmp_path):
    copy = tmp_path / "clip.mp4"
    shutil.copy(video, copy)
    row = sample_to_shard(str(copy), VideoSamplingConfig(), str(tmp_path / "frames"), store="plan")
    data = bytearray(copy.read_bytes())
    data[-100] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(FramesUnavailable, match="changed since it was planned"):
        load_frames(row["frames_file"])
    copy.unlink()
    with pytest.raises(FramesUnavailable, match="unreadable"):
        load_frames(row["frames_file"])


def test_a_frame_that_decodes_to_other_pixels_is_refused(video, tmp_path):
    row = sample_to_shard(video, VideoSamplingConfig(), str(tmp_path), store="plan")
    table = pq.read_table(row["frames_file"])
    digests = table.column("digest").to_pylist()
    digests[3] = "0" * 64  # as if the stage's decoder or resize had given other pixels
    tampered = table.set_column(table.schema.get_field_index("digest"), table.schema.field("digest"),
                                pa.array(digests, pa.string()))
    pq.write_table(tampered, row["frames_file"], compression="none")
    with pytest.raises(FramesUnavailable, match=r"frames \[3\] decode to other pixels"):
        load_frames(row["frames_file"])


def test_workers_default_to_every_core():
    from assets.video.pipe import host_cores

    assert VideoFramesConfig().workers == 0 and VideoFramesConfig().processes == host_cores()
    assert VideoFramesConfig(workers=3).processes == 3
    with pytest.raises(ValueError, match="workers must be >= 0"):
        VideoFramesConfig(workers=-1)


def test_the_stage_library_reads_chatml_files_in_batches_and_filters_samples(normalized, tmp_path):
    rows = [c.to_row() for s in ("sharegpt4v", "llava_video", "llava_instruct") for c in normalized[s].conversations]
    path = tmp_path / "conversations.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=CONVERSATION_SCHEMA), path, row_group_size=3)
    from assets.video.frames import materialize_video_frames, video_refs_from_files

    every = video_refs(pa.Table.from_pylist(rows, schema=CONVERSATION_SCHEMA))
    assert len(every) == sum(r["n_videos"] for r in rows) > 2
    assert video_refs_from_files([path], batch_rows=2) == every  # batches and the n_videos filter lose nothing
    wanted = {every[0].sample_id}
    refs, result = materialize_video_frames([path], tmp_path / "out", VideoFramesConfig(workers=1),
                                            keep=lambda sid: sid in wanted)
    assert [r.sample_id for r in refs] == [every[0].sample_id] and [s["sample_id"] for s in result.samples] == list(wanted)
    assert len(list((tmp_path / "out" / "frames").glob("*.plan.parquet"))) == 1
