"""Dirty input and faults (docs/reliability.md): one bad record never costs a source, nothing
accepted crashes training later, media stay inside their roots, gaps upstream are never
silent, torn files are never trusted, only transient errors are retried, and the pipeline
never touches a file that is not its own."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from assets.chatml.normalize import accounting, normalize_source, records_in
from assets.chatml.stage import write_chatml
from assets.contract.media import ImageVerifier, MediaResolver
from assets.contract.shards import Shard
from assets.sources.hub import HubSettings, SourceReadError, fetch_source
from assets.sources.owned import NotOwnedError
from assets.sources.registry import get_source


def _folder_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _spec_with_sample(name: str, write) -> object:
    """A registry source whose embedded sample is the file ``write(folder)`` lays down."""
    return dataclasses.replace(get_source(name), sample=lambda folder, seed: write(folder))


def _good_longalign(i: int) -> dict:
    return {"dataset": "x", "id": f"r{i}", "length": 3, "messages": [
        {"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": f"Answer {i}."}]}


# ----------------------------------------------------------------- 1. one bad record


def test_bad_bytes_surrogates_and_a_torn_line_cost_only_their_records(tmp_path):
    lines = [json.dumps(_good_longalign(i)).encode() for i in range(5)]
    lines.insert(1, b'{"dataset": "x", "id": "latin1", "messages": [{"role": "user", "content": "caf\xe9"}]}')
    lines.insert(4, json.dumps({"id": "lone", "messages": "x\udc80y"}).encode())
    lines.insert(5, b"")  # a blank line is no record
    lines.append(b'{"dataset": "x", "id": "torn", "messages": [{"role": "us')
    offsets = [sum(len(x) + 1 for x in lines[:k]) for k in range(len(lines))]

    def write(folder: Path) -> None:
        (folder / "long.jsonl").write_bytes(b"\n".join(lines))

    spec = _spec_with_sample("longalign_10k", write)
    fetched = fetch_source(spec, HubSettings(), tmp_path / "raw" / spec.name, tmp_path / "embedded")
    assert (fetched.rows, fetched.undecodable) == (5, 3)
    assert fetched.fallback
    result = write_chatml(spec, tmp_path / "raw" / spec.name, tmp_path / "chatml" / spec.name)
    assert len(result.conversations) == 5
    bad = [r for r in result.rejections if r.reason == "undecodable_record"]
    assert [r.detail.split(":")[0] for r in bad] == [
        f"long.jsonl line 2, byte {offsets[1]}", f"long.jsonl line 5, byte {offsets[4]}", f"long.jsonl line 9, byte {offsets[8]}"]
    assert "invalid UTF-8 byte 0xe9" in bad[0].detail and "lone surrogate" in bad[1].detail
    assert "invalid JSON" in bad[2].detail and all(r.stage == "raw" for r in bad)
    ok, detail = accounting(result)
    assert ok and "3 undecodable record(s)" in detail and records_in(result) == 8
    stored = pq.read_table(tmp_path / "chatml" / spec.name / "rejected.parquet").to_pylist()
    assert sum(r["reason"] == "undecodable_record" for r in stored) == 3


def test_a_json_array_with_a_bad_element_and_a_truncated_tail_keeps_the_rest(tmp_path):
    def write(folder: Path) -> None:
        good = [json.dumps({"instruction": f"Doc {i}. Q?", "output": f"A{i}.", "input": "", "file": "f"}).encode() for i in range(4)]
        body = b"[\n" + b",\n".join([good[0], b'{"instruction": "\xff\xfe", "output": "x"}', good[1], good[2], good[3]])
        (folder / "LongAlpaca-12k.json").write_bytes(body + b',\n{"instruction": "cut off')

    spec = _spec_with_sample("longalpaca", write)
    fetched = fetch_source(spec, HubSettings(), tmp_path / "raw" / spec.name, tmp_path / "embedded")
    assert (fetched.rows, fetched.undecodable) == (4, 2)
    rejected = pq.read_table(tmp_path / "raw" / spec.name / "undecodable.parquet").to_pylist()
    assert [r["detail"].split(",")[0] for r in rejected] == ["LongAlpaca-12k.json line 3", "LongAlpaca-12k.json line 7"]


# ----------------------------------------------------------------- 2. types per record, mass rejection


def test_a_column_that_is_a_string_or_a_list_keeps_each_rows_own_type(tmp_path):
    def write(folder: Path) -> None:
        img = folder / "coco" / "train2017"
        img.mkdir(parents=True)
        rows = []
        for i in range(6):
            Image.new("RGB", (32, 24), (40 * i, 0, 0)).save(img / f"{i}.jpg")
            two = i % 2 == 1
            rows.append({"id": str(i), "image": [f"{i}.jpg", f"{i}.jpg"] if two else f"{i}.jpg", "conversations": [
                {"from": "human", "value": "<image>\n<image>\nSame?" if two else "<image>\nColour?"},
                {"from": "gpt", "value": "Red."}]})
        (folder / "llava_instruct_150k.json").write_text(json.dumps(rows))

    spec = _spec_with_sample("llava_instruct", write)
    fetch_source(spec, HubSettings(), tmp_path / "raw" / spec.name, tmp_path / "embedded")
    result = write_chatml(spec, tmp_path / "raw" / spec.name, tmp_path / "chatml" / spec.name, tmp_path / "verdicts")
    assert result.reasons() == {}
    assert [c.to_row()["n_images"] for c in result.conversations] == [1, 2, 1, 2, 1, 2]
    assert len(list((tmp_path / "verdicts").rglob("*.json"))) == 6  # one full decode per distinct image, kept


def test_mass_rejection_fails_a_blocking_check_naming_the_reason(tmp_path):
    from assets.defs.chatml import build_chatml_asset
    from assets.defs.resources import DataStore, QualityPolicy, SourceHub
    from assets.defs.sources import build_raw_asset

    def write(folder: Path) -> None:
        rows = [{"id": str(i), "image": f"gone{i}.jpg", "conversations": [
            {"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "A."}]} for i in range(4)]
        (folder / "llava_instruct_150k.json").write_text(json.dumps(rows))

    spec = _spec_with_sample("llava_instruct", write)
    resources = {"store": DataStore(root=str(tmp_path)), "hub": SourceHub(), "quality": QualityPolicy(min_records=1)}
    assert dg.materialize([build_raw_asset(spec)], resources=resources).success
    from assets.defs.partitions import SHARD_KEYS

    sizes = {k: 0 for k in SHARD_KEYS}
    for k in SHARD_KEYS:  # every shard: the ones with records fail, an empty one passes
        result = dg.materialize([build_chatml_asset(spec)], partition_key=k, resources=resources, raise_on_error=False)
        (check,) = [e.event_specific_data for e in result.all_events
                    if e.event_type_value == "ASSET_CHECK_EVALUATION" and e.event_specific_data.check_name == "no_mass_rejection"]
        md = result.asset_materializations_for_node(f"chatml__{spec.name}")[0].metadata if result.success else None
        status = json.loads((tmp_path / "chatml" / spec.name / "shards" / k / "status.json").read_text())
        sizes[k] = status["records"]
        if sizes[k]:
            assert not result.success  # the blocking check stops the run
            assert not check.passed and check.metadata["reason"].value == "missing_media"
            n = sizes[k]
            assert check.metadata["worst"].value == f"llava_instruct: {n} of {n} (100%) lost to missing_media"
            assert status["guards"]["no_mass_rejection"] is False
        else:
            assert check.passed and md["rows_in"].value == 0
    assert sum(sizes.values()) == 4  # the shards hold the 4 records between them
    # the share is configurable: with everything allowed the same source passes
    resources["quality"] = QualityPolicy(max_reason_share=1.0)
    busiest = max(sizes, key=sizes.get)
    assert dg.materialize([build_chatml_asset(spec)], partition_key=busiest, resources=resources, raise_on_error=False).success


def test_mass_rejection_rule():
    from assets.contract.quality import count_lost, mass_rejections

    lost = count_lost([{"source": "a", "reason": "x", "source_rows": [0, 1, 2]}, {"source": "a", "reason": "y", "source_rows": []},
                       {"source": "b", "reason": "x", "source_rows": [4]}])
    assert lost == {("a", "x"): 3, ("a", "y"): 1, ("b", "x"): 1}
    assert [m.describe() for m in mass_rejections(lost, {"a": 5, "b": 2})] == ["a: 3 of 5 (60%) lost to x"]
    assert mass_rejections(lost, {"a": 5, "b": 2}, 0.2)[0].share == 0.6
    assert len(mass_rejections(lost, {"a": 5, "b": 2}, 0.2)) == 2


def _video_chatml(root: Path, source: str, paths: list[str], guards_ok: bool = True) -> dict[str, int]:
    """A video source's ChatML as the sharded chatml asset writes it (every shard's folder);
    returns shard key -> samples in it."""
    from assets.contract.conversation import CONVERSATION_SCHEMA, Conversation, text_part, video_part
    from assets.defs.partitions import SHARD_KEYS, SHARDS

    convs = [Conversation(f"s{i}", source, "video", [
        {"role": "user", "content": [video_part(p), text_part("What happens?")]},
        {"role": "assistant", "content": [text_part("Something.")]}], [i]).to_row() for i, p in enumerate(paths)]
    sizes = {}
    for key in SHARD_KEYS:
        out = root / "chatml" / source / "shards" / key
        out.mkdir(parents=True, exist_ok=True)
        mine = [c for c in convs if Shard.from_key(key, SHARDS).contains(c["sample_id"])]
        sizes[key] = len(mine)
        pq.write_table(pa.Table.from_pylist(mine, schema=CONVERSATION_SCHEMA), out / "conversations.parquet")
        guards = {"no_sample_lost": True, "no_special_tokens": True, "no_mass_rejection": guards_ok}
        (out / "status.json").write_text(json.dumps({"conversations": len(mine), "records": len(mine), "guards": guards}))
    return sizes


def test_video_frames_fails_when_most_videos_of_a_source_are_rejected(tmp_path):
    from assets.defs.resources import DataStore, QualityPolicy
    from assets.defs.video import build_video_frames

    names = [f"{c}.mp4" for c in "abcdefghijkl"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    sizes = _video_chatml(tmp_path, "vids", [str(tmp_path / n) for n in names])
    shard, n = max(sizes.items(), key=lambda kv: kv[1])
    resources = {"store": DataStore(root=str(tmp_path)), "quality": QualityPolicy(min_records=1)}
    result = dg.materialize([build_video_frames(["vids"])], partition_key=shard, resources=resources, raise_on_error=False)
    checks = {e.event_specific_data.check_name: e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert not checks["no_mass_rejection"].passed and not result.success
    assert checks["no_mass_rejection"].metadata["worst"].value == f"vids: {n} of {n} (100%) lost to empty_file"
    # the default floor (quality.min_records = 10): a shard of a few parts is judged as 10
    result = dg.materialize([build_video_frames(["vids"])], partition_key=shard,
                            resources={**resources, "quality": QualityPolicy()}, raise_on_error=False)
    checks = {e.event_specific_data.check_name: e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert checks["no_mass_rejection"].passed == (n <= 5)


# ----------------------------------------------------------------- 3. nothing accepted crashes training


def _jpeg(path: Path, size=(64, 48)) -> Path:
    Image.new("RGB", size, (10, 200, 30)).save(path, quality=95)
    return path


def test_an_image_with_a_good_header_and_a_torn_body_is_rejected(tmp_path):
    noise = Image.frombytes("RGB", (256, 256), bytes(range(256)) * 768)  # a body much larger than the header
    noise.save(tmp_path / "whole.jpg", quality=95)
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "torn.jpg").write_bytes(data[: len(data) // 3])
    with Image.open(tmp_path / "torn.jpg") as img:  # the header alone says it is fine
        assert img.size == (256, 256)
    media = MediaResolver([tmp_path], tmp_path / "inline")
    record = {"id": "1", "image": "torn.jpg", "conversations": [{"from": "human", "value": "<image>\nColour?"}, {"from": "gpt", "value": "Green."}]}
    result = normalize_source(get_source("llava_instruct"), [record, {**record, "image": "whole.jpg"}], media)
    assert [c.messages[0]["content"][0]["path"] for c in result.conversations] == [str((tmp_path / "whole.jpg").resolve())]
    ((reason, detail),) = [(r.reason, r.detail) for r in result.rejections]
    assert reason == "unreadable_image" and detail.startswith("torn.jpg: OSError") and "truncated" in detail


def test_image_verdicts_are_cached_by_content(tmp_path):
    _jpeg(tmp_path / "a.jpg")
    (tmp_path / "copy.jpg").write_bytes((tmp_path / "a.jpg").read_bytes())
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    cache = tmp_path / "cache"
    first = ImageVerifier(cache)
    for name in ("a.jpg", "copy.jpg", "bad.png", "a.jpg"):
        first.verdict(str(tmp_path / name))
    assert first.decoded == 2  # the copy has the same content, the repeat is remembered
    again = ImageVerifier(cache)
    assert again.verdict(str(tmp_path / "copy.jpg"))["ok"] and not again.verdict(str(tmp_path / "bad.png"))["ok"]
    assert again.decoded == 0


def test_an_aspect_ratio_the_processor_refuses_is_rejected(tmp_path):
    _jpeg(tmp_path / "strip.jpg", (402, 2))
    with pytest.raises(Exception) as exc:
        MediaResolver([tmp_path], tmp_path / "i").image("strip.jpg")
    assert exc.value.reason == "unreadable_image" and "aspect ratio" in exc.value.detail


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from assets.contract.chat_template import QWEN2_VL_SPECIAL_TOKENS, render_chatml  # noqa: E402
from assets.contract.cleaning import _SPECIAL_TOKEN_RE, _STRAY_RE, clean_text, special_tokens_left  # noqa: E402

FRAGMENTS = [*QWEN2_VL_SPECIAL_TOKENS, "<|", "|>", "<", ">", "|", "im_", "end", "image_pad", "_pad", "vision",
             "</s>", "<s>", "</", "s>", "[INST]", "[/INST]", "[", "]", "INST", "<<SYS>>", "<unk>", "<pad>",
             "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\ufffd", "\x00", "\x07", "\x1b", "\x85", "\r", "\n", " ",
             "\t", "a", "Z", "_", "0"]
adversarial = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join) | st.text(max_size=60)


@settings(max_examples=600, deadline=None)
@given(adversarial)
def test_cleaning_is_idempotent_and_leaves_no_special_token(text):
    once = clean_text(text)
    assert clean_text(once) == once
    assert special_tokens_left(once) == [] and not _SPECIAL_TOKEN_RE.search(once) and not _STRAY_RE.search(once)
    assert "\r" not in once


@pytest.mark.parametrize("text", ["<|ima\u200bge_pad|>", "<|im_<|endoftext|>end|>", "<|vision_<|x|>start|>",
                                  "<<|im_end|>|im_start|>", "<|im\ufeff_end|>", "[IN\u200dST]", "<</s>/s>"])
def test_tokens_rebuilt_by_cleaning_are_removed(text):
    assert special_tokens_left(clean_text(text)) == [] and not _SPECIAL_TOKEN_RE.search(clean_text(text))


def test_two_text_parts_cannot_meet_as_a_token(tmp_path):
    from assets.chatml.normalize import clean_messages

    messages = [{"role": "user", "content": [{"type": "text", "text": "say <|im_", "path": None, "fps": None, "max_frames": None},
                                             {"type": "text", "text": "end|> now", "path": None, "fps": None, "max_frames": None}]},
                {"role": "assistant", "content": [{"type": "text", "text": "ok", "path": None, "fps": None, "max_frames": None}]}]
    rendered = render_chatml(clean_messages(messages))
    assert rendered.count("<|im_end|>") == 3  # the system prompt's, the user's and the assistant's turn ends only


def test_checks_that_guard_training_are_blocking():
    from pipelines.definitions import build_definitions

    graph = build_definitions().resolve_asset_graph()
    specs = {(k.asset_key.to_user_string().split("/")[0], k.name): graph.get_check_spec(k) for k in graph.asset_check_keys}
    guards = [("chatml", "no_sample_lost"), ("chatml", "no_special_tokens"), ("chatml", "no_mass_rejection"),
              ("video_frames", "frames_match_grids"), ("video_frames", "no_mass_rejection"),
              ("token_counts", "video_tokens_match_frames"), ("token_counts", "no_sample_lost"),
              ("token_counts", "no_mass_rejection"), ("packed", "no_sample_lost"), ("packed", "no_truncation"),
              ("etvlm_mixture", "shares_within_tolerance")]
    for guard in guards:
        assert specs[guard].blocking, guard


# ----------------------------------------------------------------- 4. media stay inside their roots


@pytest.fixture
def rooted(tmp_path):
    root = tmp_path / "media"
    (root / "pics").mkdir(parents=True)
    _jpeg(root / "pics" / "in.jpg")
    _jpeg(tmp_path / "outside.jpg")
    (root / "pics" / "link.jpg").symlink_to(tmp_path / "outside.jpg")
    (root / "pics" / "inner_link.jpg").symlink_to(root / "pics" / "in.jpg")
    return root, MediaResolver([root], tmp_path / "inline")


@pytest.mark.parametrize("ref,reason", [
    ("{tmp}/outside.jpg", "media_outside_root"),  # absolute, a real JPEG elsewhere
    ("/etc/passwd", "media_outside_root"),
    ("../outside.jpg", "media_outside_root"),
    ("pics/../../outside.jpg", "media_outside_root"),
    ("pics/link.jpg", "media_outside_root"),  # a symlink out
    ("../nothing_there.jpg", "media_outside_root"),
    ("pics/gone.jpg", "missing_media"),
])
def test_media_outside_the_root_are_rejected(rooted, tmp_path, ref, reason):
    _, media = rooted
    with pytest.raises(Exception) as exc:
        media.image(ref.format(tmp=tmp_path))
    assert exc.value.reason == reason


@pytest.mark.parametrize("ref", ["pics/in.jpg", "/pics/in.jpg", "pics/../pics/./in.jpg", "pics/inner_link.jpg", "{root}/pics/in.jpg"])
def test_paths_inside_the_root_resolve(rooted, ref):
    root, media = rooted
    assert media.image(ref.format(root=root)) == str((root / "pics" / "in.jpg").resolve())


def test_mmdu_rows_with_a_leading_slash_resolve_against_the_media_root(normalized, fetched):
    rows = pq.read_table(fetched["mmdu"].data_path).to_pylist()
    assert rows[0]["image"][0].startswith("/mmdu-45k_pics/")  # as the published mmdu-45k.json writes them
    assert len(normalized["mmdu"].conversations) == 6 and normalized["mmdu"].reasons() == {"media_placeholder_mismatch": 1}


# ----------------------------------------------------------------- 5. no silent upstream gap


def test_video_frames_refuses_a_missing_or_failed_source_unless_excluded(tmp_path):
    from assets.defs.resources import DataStore, QualityPolicy
    from assets.defs.video import build_video_frames

    _video_chatml(tmp_path, "present", [])
    _video_chatml(tmp_path, "failed", [], guards_ok=False)
    asset = build_video_frames(["present", "failed", "absent"])
    store = DataStore(root=str(tmp_path))
    result = dg.materialize([asset], partition_key="01", resources={"store": store, "quality": QualityPolicy()}, raise_on_error=False)
    assert not result.success
    (failure,) = [e.event_specific_data.error for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "chatml/failed shard 01: its guard check(s) no_mass_rejection failed" in failure.message
    assert "chatml/absent shard 01: not materialised" in failure.message and "chatml/present" not in failure.message
    ok = dg.materialize([asset], partition_key="01",
                        resources={"store": store, "quality": QualityPolicy(exclude_sources=["failed", "absent"])})
    md = ok.asset_materializations_for_node("video_frames")[0].metadata
    assert md["excluded_sources"].value == "failed, absent" and md["sources"].value == "present"


def test_a_torn_chatml_output_is_not_trusted(tmp_path):
    from assets.defs.chatml import chatml_problem

    sizes = _video_chatml(tmp_path, "s", [str(tmp_path / "v.mp4")])
    folder = tmp_path / "chatml" / "s" / "shards" / next(k for k, n in sizes.items() if n)
    assert chatml_problem(folder) is None
    data = (folder / "conversations.parquet").read_bytes()
    (folder / "conversations.parquet").write_bytes(data[: len(data) // 2])
    assert chatml_problem(folder).startswith("conversations.parquet does not verify")
    (folder / "status.json").unlink()
    assert "no status.json" in chatml_problem(folder)


# ----------------------------------------------------------------- 6. torn files, atomic outputs, orphans


@pytest.fixture(scope="module")
def small_video(tmp_path_factory) -> Path:
    from assets.sources.embedded.media import encode_video

    return encode_video(tmp_path_factory.mktemp("vid") / "clip.mp4", seconds=2, fps=10, size=(64, 48), pattern=0, hue=10)


@pytest.mark.parametrize("store", ["plan", "png", "webp"])
def test_a_torn_frames_shard_or_rejection_is_recomputed(small_video, tmp_path, store):
    from assets.video.frames import sample_to_shard, verified_shard_plan, video_key
    from assets.video.plan import VideoSamplingConfig

    cfg = VideoSamplingConfig()
    first = sample_to_shard(str(small_video), cfg, str(tmp_path), store=store)
    shard = Path(first["frames_file"])
    assert first["status"] == "ok" and verified_shard_plan(shard, store)["n_frames"] == first["n_frames"] == 4
    # a shard of another store is never taken for this one
    assert verified_shard_plan(shard, "png" if store != "png" else "plan") is None
    for torn in (b"", shard.read_bytes()[: shard.stat().st_size // 2], shard.read_bytes()[:-9]):
        shard.write_bytes(torn)
        assert verified_shard_plan(shard, store) is None
        again = sample_to_shard(str(small_video), cfg, str(tmp_path), store=store)
        assert (again["status"], again["cached"], again["n_frames"]) == ("ok", False, 4)
    assert sample_to_shard(str(small_video), cfg, str(tmp_path), store=store)["cached"]
    # a remembered failure that does not parse is no verdict: the video is decoded again
    key = video_key(hashlib.sha256(small_video.read_bytes()).hexdigest(), cfg)
    shard.unlink()
    (tmp_path / f"{key}.rejected.json").write_text("")
    assert sample_to_shard(str(small_video), cfg, str(tmp_path), store=store)["status"] == "ok"


def test_a_failing_write_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    from assets.contract import atomic

    path = tmp_path / "t.parquet"
    atomic.write_parquet(pa.table({"a": [1, 2, 3]}), path)
    before = path.read_bytes()

    def torn_write(table, where, **kw):
        Path(where).write_bytes(b"PAR1 half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "write_table", torn_write)
    with pytest.raises(OSError):
        atomic.write_parquet(pa.table({"a": [4]}), path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]


def test_packed_and_mixture_are_written_atomically(tmp_path, monkeypatch):
    from assets.defs.mixture import etvlm_mixture
    from assets.defs.packing import packed
    from assets.defs.resources import DataStore

    n = 40
    counts = pa.table({"sample_id": [f"s{i}" for i in range(n)], "source": ["src"] * n,
                       "category": ["long_text", "short_image", "interleave", "video"] * (n // 4),
                       "n_tokens": pa.array([500 + 37 * i for i in range(n)], pa.int64()),
                       "n_text_tokens": pa.array([500 + 37 * i for i in range(n)], pa.int64())})
    (tmp_path / "token_counts").mkdir()
    pq.write_table(counts, tmp_path / "token_counts" / "token_counts.parquet")
    store = DataStore(root=str(tmp_path))
    assert dg.materialize([packed, etvlm_mixture], partition_key="8k", resources={"store": store}).success
    outputs = [tmp_path / "packed" / "8k" / "sequences.parquet", tmp_path / "etvlm_mixture" / "8k" / "mixture.parquet"]
    before = [p.read_bytes() for p in outputs]
    real = pq.write_table
    for torn_name in ("sequences", "mixture"):
        def torn_write(table, where, torn_name=torn_name, **kw):
            if torn_name not in str(where):
                return real(table, where, **kw)
            real(table.slice(0, 1), where, **kw)
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(pq, "write_table", torn_write)
        assert not dg.materialize([packed, etvlm_mixture], partition_key="8k", resources={"store": store}, raise_on_error=False).success
        assert [p.read_bytes() for p in outputs] == before, torn_name


def test_decode_workers_die_with_their_parent(tmp_path):
    import psutil

    script = textwrap.dedent("""
        import multiprocessing as mp, os, sys, time
        from concurrent.futures import ProcessPoolExecutor
        from assets.video.frames import die_with_parent
        if __name__ == "__main__":
            pool = ProcessPoolExecutor(2, mp_context=mp.get_context("spawn"), initializer=die_with_parent, initargs=(os.getpid(),))
            futures = [pool.submit(time.sleep, 120) for _ in range(2)]
            time.sleep(0.5)
            print(" ".join(str(p) for p in pool._processes), flush=True)
            time.sleep(120)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parent.parent)
    try:
        workers = [psutil.Process(int(p)) for p in parent.stdout.readline().split()]
        assert len(workers) == 2 and all(w.is_running() for w in workers)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        alive = workers
        while alive and time.monotonic() < deadline:
            alive = [w for w in alive if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
            time.sleep(0.1)
        assert not alive
    finally:
        parent.kill()


# ----------------------------------------------------------------- 7. retry only what can heal


def test_only_transient_errors_are_retried():
    import requests
    from huggingface_hub.errors import HfHubHTTPError

    from assets.defs.sources import fetch_failure

    class Response:
        def __init__(self, status):
            self.status_code = status
            self.headers, self.request, self.text = {}, None, ""

    def http(status):
        return HfHubHTTPError(f"{status} from the hub", response=Response(status))

    transient = [requests.ConnectionError("reset"), requests.Timeout("slow"), TimeoutError("timed out"), http(503), http(429),
                 OSError(errno.ECONNRESET, "Connection reset by peer")]
    for exc in transient:
        assert fetch_failure("s", exc) is exc, exc
    wrapped = RuntimeError("datasets failed")
    wrapped.__cause__ = requests.ConnectionError("reset")
    assert fetch_failure("s", wrapped) is wrapped
    permanent = [json.JSONDecodeError("Expecting value", "x", 0), OSError(errno.EROFS, "Read-only file system"),
                 PermissionError(errno.EACCES, "Permission denied"), ValueError("evil.zip: member '../x' escapes the folder"),
                 NotOwnedError("folder in the way"), SourceReadError("no file matches"), http(404), http(401)]
    for exc in permanent:
        failure = fetch_failure("s", exc)
        assert isinstance(failure, dg.Failure) and failure.allow_retries is False, exc
        assert failure.description.startswith(f"raw/s: {type(exc).__name__}")


def test_a_refused_fetch_fails_at_once_without_retries(tmp_path):
    from assets.defs.resources import DataStore, SourceHub
    from assets.defs.sources import build_raw_asset

    spec = get_source("longalpaca")
    (tmp_path / "embedded" / spec.hub_id).mkdir(parents=True)
    (tmp_path / "embedded" / spec.hub_id / "mine.txt").write_text("user data")
    started = time.monotonic()
    result = dg.materialize([build_raw_asset(spec)], resources={"store": DataStore(root=str(tmp_path)), "hub": SourceHub()},
                            raise_on_error=False)
    assert not result.success and time.monotonic() - started < 10
    kinds = [e.event_type_value for e in result.all_events]
    assert "STEP_UP_FOR_RETRY" not in kinds and kinds.count("STEP_FAILURE") == 1
    assert (tmp_path / "embedded" / spec.hub_id / "mine.txt").read_text() == "user data"


# ----------------------------------------------------------------- 8. user files are never touched


def test_an_unstamped_folder_in_the_way_is_refused_untouched(tmp_path):
    spec = get_source("longalpaca")
    folder = tmp_path / "embedded" / spec.hub_id
    folder.mkdir(parents=True)
    (folder / "LongAlpaca-12k.json").write_text("my own file")
    before = _folder_digest(folder)
    with pytest.raises(NotOwnedError, match="in the way.*did not generate"):
        fetch_source(spec, HubSettings(), tmp_path / "raw" / spec.name, tmp_path / "embedded")
    assert _folder_digest(folder) == before and not list(folder.parent.glob(".giraffe-partial-*"))


def test_a_hub_id_naming_a_local_read_only_folder_is_refused_in_embedded_mode(tmp_path):
    user = tmp_path / "my-dataset"
    user.mkdir()
    (user / "data.json").write_text("[]")
    before = _folder_digest(user)
    user.chmod(0o555)
    try:
        for hub_id in (str(user), "../my-dataset", "org/../../my-dataset"):
            spec = dataclasses.replace(get_source("longalpaca"), hub_id=hub_id)
            with pytest.raises(NotOwnedError, match="not a hub repo id"):
                fetch_source(spec, HubSettings(), tmp_path / "data" / "raw" / "x", tmp_path / "data" / "embedded")
    finally:
        user.chmod(0o755)
    assert _folder_digest(user) == before


def test_a_symlink_out_of_the_embedded_root_is_refused(tmp_path):
    user = tmp_path / "elsewhere"
    user.mkdir()
    (user / "keep.txt").write_text("x")
    (tmp_path / "embedded").mkdir()
    (tmp_path / "embedded" / "Yukang").symlink_to(user, target_is_directory=True)
    with pytest.raises(NotOwnedError, match="outside"):
        fetch_source(get_source("longalpaca"), HubSettings(), tmp_path / "raw" / "x", tmp_path / "embedded")
    assert sorted(p.name for p in user.iterdir()) == ["keep.txt"]


def test_another_seed_regenerates_only_a_folder_holding_nothing_but_its_own_files(tmp_path):
    spec = get_source("mmdu")  # its archive is unpacked into the sample: those files are its own too
    embedded = tmp_path / "embedded"
    first = fetch_source(spec, HubSettings(seed=0), tmp_path / "raw" / spec.name, embedded)
    folder = Path(first.location)
    assert (folder / "mmdu-45k_pics").is_dir()
    second = fetch_source(spec, HubSettings(seed=1), tmp_path / "raw" / spec.name, embedded)
    assert second.content_hash != first.content_hash  # regenerated: nothing foreign was there
    (folder / "mmdu-45k_pics" / "my_photo.jpg").write_bytes(b"mine")
    before = _folder_digest(folder)
    with pytest.raises(NotOwnedError, match="did not write: mmdu-45k_pics/my_photo.jpg"):
        fetch_source(spec, HubSettings(seed=2), tmp_path / "raw" / spec.name, embedded)
    assert _folder_digest(folder) == before


def test_benchmark_samples_follow_the_same_rule(tmp_path):
    from eval.benchmarks import BENCHMARKS
    from eval.fetch import ensure_sample
    from eval.formats import FetchOptions

    spec = BENCHMARKS[0]
    folder = tmp_path / spec.hub_id
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(NotOwnedError):
        ensure_sample(spec, tmp_path, FetchOptions())
    assert (folder / "notes.txt").read_text() == "mine"


# ----------------------------------------------------------------- media layouts that match nothing


def test_media_patterns_matching_no_file_fail_with_the_repo_listing(tmp_path):
    spec = get_source("sharegpt4o")
    wrong = dataclasses.replace(spec, media=dataclasses.replace(spec.media, patterns=("videos/*.tar.gz",)))
    with pytest.raises(SourceReadError) as exc:
        fetch_source(wrong, HubSettings(), tmp_path / "raw" / spec.name, tmp_path / "embedded")
    message = str(exc.value)
    assert "['videos/*.tar.gz'] match no file" in message
    assert "video_conversations/gpt4o.jsonl" in message and "video_conversations/pvideo.tar.gz" in message


def test_media_pattern_decision_on_a_listing():
    from assets.sources.hub import check_media_patterns, folder_files

    spec = get_source("mmdu")
    check_media_patterns(spec, ("mmdu-45k_pics.zip",), ["mmdu-45k.json", "mmdu-45k_pics.zip"], "repo")
    with pytest.raises(SourceReadError, match=r"holds 2 file\(s\):\n  mmdu-45k.json\n  mmdu-45k_pics.zip"):
        check_media_patterns(spec, ("pics/*.zip",), ["mmdu-45k.json", "mmdu-45k_pics.zip"], "repo")
    assert folder_files(Path(__file__).parent / "data_that_does_not_exist") == []

