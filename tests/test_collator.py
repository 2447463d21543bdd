"""The packed-sequence collator on real embedded samples: exact lengths, labels, pixels,
positions, and the tiny Qwen2-VL's logits in isolated and concat packing."""

from __future__ import annotations

import copy
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from transformers import Qwen2VLForConditionalGeneration

from assets.contract.chat_template import IM_END, render_chatml
from assets.contract.conversation import CONVERSATION_SCHEMA
from assets.contract.media import RejectRow
from assets.defs.tokens import video_plans
from assets.tokens.count import TokenCounter
from assets.video.frames import VideoFramesConfig, read_frames, run_video_frames, video_refs
from assets.video.grid import HybridConfig
from assets.video.inputs import expand_videos, video_pixel_values
from assets.video.plan import VideoSamplingConfig
from training.collator import (
    IGNORE_INDEX,
    PACKED_ATTENTION,
    CollateError,
    MissingMediaError,
    PackedBatchBuilder,
    PackedSequenceDataset,
    SampleNotFoundError,
    SampleStore,
    block_diagonal_causal_mask,
    choose_attn_implementation,
    isolated_attention_kwargs,
    load_packed_rows,
    register_packed_attention,
)
from training.positions.apply import PositionMethodConfig, apply_position_method
from training.positions.packed import position_rule_for_model
from training.positions.v2pe import V2PEConfig


@pytest.fixture(scope="module")
def root(normalized, tmp_path_factory):
    """A data root with every source's conversations and three sampled videos: one at the
    default settings (one grid row), two in hybrid resolution (several grid rows)."""
    root = tmp_path_factory.mktemp("collate-data")
    for name, res in normalized.items():
        (root / "chatml" / name).mkdir(parents=True)
        rows = [c.to_row() for c in res.conversations]
        pq.write_table(pa.Table.from_pylist(rows, schema=CONVERSATION_SCHEMA), root / "chatml" / name / "conversations.parquet")

    def refs(source):
        rows = [normalized[source].conversations[0].to_row()]
        return video_refs(pa.Table.from_pylist(rows, schema=CONVERSATION_SCHEMA))

    out = root / "video_frames"
    run_video_frames(refs("sharegpt4v"), out, VideoFramesConfig(workers=1))
    hybrid = VideoFramesConfig(sampling=VideoSamplingConfig(hybrid=HybridConfig(4, 24, 3, min_frames=0)), workers=1)
    run_video_frames(refs("llava_video") + refs("sharegpt4o"), root / "hybrid_frames", hybrid)
    for table in ("samples.parquet", "videos.parquet"):
        merged = pa.concat_tables([pq.read_table(out / table), pq.read_table(root / "hybrid_frames" / table)])
        pq.write_table(merged, out / table)
    return root


@pytest.fixture(scope="module")
def store(root):
    return SampleStore(root)


@pytest.fixture(scope="module")
def counter(root, processor):
    return TokenCounter(processor, video_plans(root / "video_frames"))


@pytest.fixture(scope="module")
def builder(processor, store):
    return PackedBatchBuilder(processor, store)


def _row(normalized, source, k=0):
    """A deep copy: tests edit rows, and the session-wide ``normalized`` shares its messages."""
    return copy.deepcopy(normalized[source].conversations[k].to_row())


def _seq(rows, counter, mode="isolated", seq_id="8k-test-0"):
    counts = [counter.count(r)["n_tokens"] for r in rows]
    return {
        "seq_id": seq_id, "stage": "8k", "capacity": 8192, "mode": mode, "category": "mixed", "long": False,
        "sample_ids": [r["sample_id"] for r in rows], "sources": [r["source"] for r in rows],
        "offsets": np.cumsum([0, *counts[:-1]]).tolist(), "lengths": counts, "n_tokens": sum(counts),
    }


# -- one sample at a time ------------------------------------------------------------------


def test_every_sample_collates_to_its_exact_token_count(normalized, builder, counter):
    checked = {"text": 0, "image": 0, "video": 0}
    for name, res in normalized.items():
        for conv in res.conversations:
            row = conv.to_row()
            try:
                want = counter.count(row)
            except RejectRow:  # a video the fixture did not sample: the collator refuses it too
                with pytest.raises(MissingMediaError, match=row["sample_id"]):
                    builder.samples(row)
                continue
            got = builder.samples(row)
            ids, types = got.input_ids, got.token_types
            assert len(got) == want["n_tokens"], (name, row["sample_id"])
            assert int((types == 1).sum()) == want["n_image_tokens"] and int((types == 2).sum()) == want["n_video_tokens"]
            assert np.array_equal(types == 1, ids == builder.samples.ids["<|image_pad|>"])
            assert np.array_equal(types == 2, ids == builder.samples.ids["<|video_pad|>"])
            assert (got.labels[types != 0] == IGNORE_INDEX).all()
            for pixels, grids in ((got.pixel_values, got.image_grid_thw), (got.pixel_values_videos, got.video_grid_thw)):
                if grids:
                    assert sum(int(np.prod(g, axis=1).sum()) for g in grids) == sum(p.shape[0] for p in pixels)
            checked["video" if want["n_videos"] else "image" if want["n_images"] else "text"] += 1
    assert checked["video"] == 3 and checked["image"] >= 40 and checked["text"] >= 10


@pytest.mark.parametrize("source", ["llava_instruct", "mantis", "mmdu"])
def test_image_samples_equal_the_processor(normalized, builder, processor, source):
    from PIL import Image

    row = _row(normalized, source)
    got = builder.samples(row)
    paths = [p["path"] for m in row["messages"] for p in m["content"] if p["type"] == "image"]
    ref = processor(text=[render_chatml(row["messages"])], images=[Image.open(p).convert("RGB") for p in paths],
                    return_tensors="np", return_mm_token_type_ids=True)
    assert np.array_equal(got.input_ids, ref["input_ids"][0])
    assert np.array_equal(got.token_types, ref["mm_token_type_ids"][0])
    assert np.array_equal(np.concatenate(got.pixel_values), ref["pixel_values"])
    assert np.array_equal(np.concatenate(got.image_grid_thw), ref["image_grid_thw"])


@pytest.mark.parametrize("source", ["sharegpt4v", "llava_video"])
def test_video_samples_equal_the_expanded_text_and_stored_frames(normalized, builder, processor, root, source):
    row = _row(normalized, source)
    got = builder.samples(row)
    plans = video_plans(root / "video_frames")
    grids = plans[(row["sample_id"], 0)]
    ids = processor.tokenizer(expand_videos(render_chatml(row["messages"]), [grids]))["input_ids"]
    assert got.input_ids.tolist() == ids
    assert got.video_grid_thw[0].tolist() == grids
    assert (len(grids) > 1) == (source == "llava_video")  # hybrid: one block per grid row
    video = next(v for v in pq.read_table(root / "video_frames" / "videos.parquet").to_pylist()
                 if v["video_key"] == next(s for s in pq.read_table(root / "video_frames" / "samples.parquet").to_pylist()
                                           if s["sample_id"] == row["sample_id"])["video_key"])
    _, frames = read_frames(video["frames_file"])
    rows = pq.read_table(video["frames_file"], columns=["grid_row"]).column("grid_row").to_pylist()
    ref, _ = video_pixel_values(frames, rows, [tuple(g) for g in grids])
    assert np.array_equal(got.pixel_values_videos[0], ref)


@pytest.mark.parametrize("source,k", [("llava_instruct", 0), ("mmdu", 0), ("sharegpt4v", 0), ("longalign_10k", 2)])
def test_labels_are_assistant_content_and_its_im_end_only(normalized, builder, processor, source, k):
    row = _row(normalized, source, k)
    got = builder.samples(row)
    learned = got.labels != IGNORE_INDEX
    assert np.array_equal(got.labels[learned], got.input_ids[learned])
    edges = np.flatnonzero(np.diff(np.concatenate([[0], learned.astype(int), [0]])))
    runs = list(zip(edges[::2], edges[1::2]))
    answers = [m for m in row["messages"] if m["role"] == "assistant"]
    assert len(runs) == len(answers) >= 1
    for (a, b), m in zip(runs, answers):
        text = "".join(p["text"] or "" for p in m["content"])
        assert processor.tokenizer.decode(got.input_ids[a:b].tolist()) == text + IM_END
        assert processor.tokenizer.decode(got.input_ids[:a].tolist()).endswith("<|im_start|>assistant\n")
        assert processor.tokenizer.decode(got.input_ids[b:b + 1].tolist()) == "\n"  # not learned
    assert got.labels[0] == IGNORE_INDEX


# -- packed sequences ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed(normalized):
    """text, image, hybrid video (4 grid rows), two images, hybrid video (3 rows): ~2K tokens."""
    return [_row(normalized, "longalign_10k", 0), _row(normalized, "m3it", 0), _row(normalized, "llava_video", 0),
            _row(normalized, "mantis", 0), _row(normalized, "sharegpt4o", 0)]


def test_packed_batch_concatenates_samples_with_their_positions(mixed, builder, counter, tiny_model_dir):
    model = Qwen2VLForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    for mode in ("isolated", "concat"):
        seq = _seq(mixed, counter, mode)
        batch = builder(seq)
        samples = builder.collate_samples(seq)
        assert batch.mode == mode and batch.sample_ids == seq["sample_ids"]
        assert batch.n_tokens == seq["n_tokens"] and batch.cu_seqlens.tolist() == [*seq["offsets"], seq["n_tokens"]]
        assert torch.equal(batch.input_ids[0], torch.from_numpy(np.concatenate([s.input_ids for s in samples])))
        inputs = batch.model_inputs()
        if mode == "isolated":
            assert inputs["position_ids"].shape == (4, 1, batch.n_tokens) and inputs["attention_mask"] is None
            for (a, b), s in zip(batch.boundaries, samples):
                want, _ = model.model.get_rope_index(
                    torch.from_numpy(s.input_ids)[None], mm_token_type_ids=torch.from_numpy(s.token_types)[None],
                    image_grid_thw=torch.from_numpy(np.concatenate(s.image_grid_thw)) if s.image_grid_thw else None,
                    video_grid_thw=torch.from_numpy(np.concatenate(s.video_grid_thw)) if s.video_grid_thw else None)
                assert torch.equal(inputs["position_ids"][1:, :, a:b], want)
        else:
            want, _ = model.model.get_rope_index(batch.input_ids, mm_token_type_ids=batch.mm_token_type_ids,
                                                 image_grid_thw=batch.image_grid_thw, video_grid_thw=batch.video_grid_thw)
            assert torch.equal(inputs["position_ids"], want)


@pytest.fixture(scope="module")
def ref_model(tiny_model_dir):
    """The tiny model with its default attention (sdpa)."""
    return Qwen2VLForConditionalGeneration.from_pretrained(tiny_model_dir).eval()


def _alone_logits(model, s):
    kwargs = {"input_ids": torch.from_numpy(s.input_ids)[None], "mm_token_type_ids": torch.from_numpy(s.token_types)[None]}
    if s.image_grid_thw:
        kwargs |= {"pixel_values": torch.from_numpy(np.concatenate(s.pixel_values)),
                   "image_grid_thw": torch.from_numpy(np.concatenate(s.image_grid_thw))}
    if s.video_grid_thw:
        kwargs |= {"pixel_values_videos": torch.from_numpy(np.concatenate(s.pixel_values_videos)),
                   "video_grid_thw": torch.from_numpy(np.concatenate(s.video_grid_thw))}
    with torch.no_grad():
        return model(**kwargs).logits[0]


def _packed_logits(model, batch):
    inputs = batch.model_inputs()
    inputs.pop("labels")
    with torch.no_grad():
        return model(**inputs).logits[0]


@pytest.mark.parametrize("impl,explicit", [("sdpa", False), ("eager", False), ("sdpa", True), (PACKED_ATTENTION, False)])
def test_isolated_logits_equal_each_sample_run_alone(mixed, processor, store, counter, tiny_model_dir, ref_model, impl,
                                                    explicit):
    register_packed_attention()
    model = Qwen2VLForConditionalGeneration.from_pretrained(tiny_model_dir, attn_implementation=impl).eval()
    assert model.config.text_config._attn_implementation == impl
    builder = PackedBatchBuilder(processor, store, attn_implementation=impl, explicit_mask=explicit)
    seq = _seq(mixed, counter, "isolated")
    batch = builder(seq)
    logits = _packed_logits(model, batch)
    for (a, b), s in zip(batch.boundaries, builder.collate_samples(seq)):  # alone: stock model, stock positions
        torch.testing.assert_close(logits[a:b], _alone_logits(ref_model, s), rtol=1e-4, atol=1e-5)
    # control: the same pack with a KV cache (transformers then skips packing detection) leaks
    leaky = batch.model_inputs()
    leaky.pop("labels")
    leaky["use_cache"] = True
    if impl == "sdpa" and not explicit:
        with torch.no_grad():
            leaked = model(**leaky).logits[0]
        a, b = batch.boundaries[1]
        assert not torch.allclose(leaked[a:b], logits[a:b], atol=1e-3)


def test_concat_logits_equal_the_model_on_the_concatenated_sequence(mixed, builder, counter, tiny_model_dir):
    model = Qwen2VLForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    batch = PackedBatchBuilder(builder.samples.processor, builder.store, mode="isolated")(_seq(mixed, counter, "concat"))
    assert batch.mode == "isolated"  # the builder's mode overrides the row's
    batch = builder(_seq(mixed, counter, "concat"))
    assert batch.mode == "concat"
    with torch.no_grad():
        ref = model(input_ids=batch.input_ids, mm_token_type_ids=batch.mm_token_type_ids,
                    pixel_values=batch.pixel_values, image_grid_thw=batch.image_grid_thw,
                    pixel_values_videos=batch.pixel_values_videos, video_grid_thw=batch.video_grid_thw).logits[0]
    torch.testing.assert_close(_packed_logits(model, batch), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("impl", ["sdpa", PACKED_ATTENTION])
def test_training_gradients_do_not_cross_samples(mixed, processor, store, counter, tiny_model_dir, impl):
    register_packed_attention()
    model = Qwen2VLForConditionalGeneration.from_pretrained(tiny_model_dir, attn_implementation=impl).train()
    batch = PackedBatchBuilder(processor, store)(_seq(mixed[:3], counter, "isolated"))
    (a0, b0), (a1, b1), (a2, b2) = batch.boundaries
    inputs = batch.model_inputs()
    inputs["labels"] = inputs["labels"].clone()
    inputs["labels"][:, :a1] = IGNORE_INDEX  # learn sample 1 only
    inputs["labels"][:, b1:] = IGNORE_INDEX
    captured = {}

    def keep(_, __, out):
        out.retain_grad()
        captured["emb"] = out

    hook = model.get_input_embeddings().register_forward_hook(keep)
    try:
        model(**inputs).loss.backward()
    finally:
        hook.remove()
    grad = captured["emb"].grad[0].abs().sum(-1)
    assert grad[a1:b1].sum() > 0
    assert grad[:a1].sum() == 0 and grad[b1:].sum() == 0  # nothing flows into the other samples


def test_v2pe_isolated_logits_equal_each_sample_alone(mixed, processor, store, counter, tiny_model_dir):
    model = apply_position_method(Qwen2VLForConditionalGeneration.from_pretrained(tiny_model_dir).eval(),
                                  PositionMethodConfig(v2pe=V2PEConfig(inference_delta=0.25)))
    builder = PackedBatchBuilder(processor, store, position_fn=position_rule_for_model(model))
    seq = _seq(mixed, counter, "isolated")
    batch = builder(seq)
    assert batch.model_inputs()["position_ids"].dtype == torch.float32
    logits = _packed_logits(model, batch)
    for (a, b), s in zip(batch.boundaries, builder.collate_samples(seq)):
        torch.testing.assert_close(logits[a:b], _alone_logits(model, s), rtol=1e-4, atol=1e-5)


def test_packed_loss_is_the_token_weighted_mean_of_sample_losses(mixed, builder, counter, tiny_model_dir):
    model = Qwen2VLForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    seq = _seq(mixed, counter, "isolated")
    batch = builder(seq)
    with torch.no_grad():
        packed = model(**batch.model_inputs()).loss
    total = n = 0
    for s in builder.collate_samples(seq):
        logits = _alone_logits(model, s)
        labels = torch.from_numpy(s.labels)
        total += torch.nn.functional.cross_entropy(logits[:-1], labels[1:], ignore_index=IGNORE_INDEX, reduction="sum")
        n += int((labels[1:] != IGNORE_INDEX).sum())
    torch.testing.assert_close(packed, total / n, rtol=1e-4, atol=1e-5)


def test_explicit_mask_is_block_diagonal_causal():
    cu = torch.tensor([0, 2, 5], dtype=torch.int32)
    m = block_diagonal_causal_mask(cu)[0, 0]
    want = torch.tensor([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(m, want)
    eager = block_diagonal_causal_mask(cu, "eager")[0, 0]
    assert torch.equal(eager == 0, want)
    assert choose_attn_implementation("concat", "cpu") == "sdpa"
    assert choose_attn_implementation("isolated", "cpu") == "giraffe_packed"


def test_isolated_kwargs_per_implementation(mixed, builder, counter):
    pos = builder(_seq(mixed, counter, "isolated")).positions
    fa = isolated_attention_kwargs(pos, "flash_attention_2")
    assert fa["position_ids"].shape[0] == 4 and fa["attention_mask"] is None and fa["use_cache"] is False
    with pytest.raises(ValueError, match="explicit 4D masks"):
        isolated_attention_kwargs(pos, "flash_attention_2", explicit_mask=True)


# -- shards and errors -----------------------------------------------------------------------


def test_load_packed_rows_reads_sequence_shards(tmp_path, mixed, counter):
    rows = [_seq(mixed[:2], counter, "isolated", "8k-a-0"), _seq(mixed[2:], counter, "isolated", "8k-a-1")]
    table = pa.Table.from_pylist(rows).replace_schema_metadata({"giraffe_mode": "isolated"})
    (tmp_path / "packed").mkdir()
    pq.write_table(table, tmp_path / "packed" / "sequences.parquet")
    assert load_packed_rows(tmp_path / "packed" / "sequences.parquet") == rows
    assert load_packed_rows([tmp_path / "packed"]) == rows
    pq.write_table(pa.table({"seq_id": ["x"]}), tmp_path / "bad.parquet")
    with pytest.raises(CollateError, match="missing columns"):
        load_packed_rows(tmp_path / "bad.parquet")
    with pytest.raises(FileNotFoundError, match="gone.parquet"):
        load_packed_rows(tmp_path / "gone.parquet")


def test_dataset_yields_one_packed_sequence_per_step(mixed, builder, counter):
    from torch.utils.data import DataLoader

    rows = [_seq(mixed[:2], counter, "isolated", "a"), _seq(mixed[2:], counter, "concat", "b")]
    got = list(DataLoader(PackedSequenceDataset(rows, builder), batch_size=None))
    assert [b.seq_id for b in got] == ["a", "b"] and [b.mode for b in got] == ["isolated", "concat"]
    assert [b.n_tokens for b in got] == [r["n_tokens"] for r in rows]


def test_unknown_sample_is_a_clear_error(builder, mixed, counter):
    seq = _seq(mixed[:1], counter)
    seq["sample_ids"] = ["no-such-sample"]
    with pytest.raises(SampleNotFoundError, match=r"no-such-sample.*longalign_10k/conversations.parquet"):
        builder(seq)
    seq["sources"] = ["no_source"]
    with pytest.raises(SampleNotFoundError, match="no_source"):
        builder(seq)


def test_missing_frames_file_names_the_sample_and_the_file(root, normalized, processor, counter, tmp_path):
    moved = tmp_path / "root"
    shutil.copytree(root / "chatml", moved / "chatml")
    shutil.copytree(root / "video_frames", moved / "video_frames")
    row = _row(normalized, "sharegpt4v")
    key = next(s["video_key"] for s in pq.read_table(moved / "video_frames" / "samples.parquet").to_pylist()
               if s["sample_id"] == row["sample_id"])
    videos = pq.read_table(moved / "video_frames" / "videos.parquet").to_pylist()
    frames_file = next(v["frames_file"] for v in videos if v["video_key"] == key)
    # the recorded path is gone but the file sits in the moved root: still found
    for v in videos:
        v["frames_file"] = str(tmp_path / "elsewhere" / "frames" / v["frames_file"].rsplit("/", 1)[-1]) if v["frames_file"] else None
    pq.write_table(pa.Table.from_pylist(videos, schema=pq.read_schema(root / "video_frames" / "videos.parquet")),
                   moved / "video_frames" / "videos.parquet")
    builder = PackedBatchBuilder(processor, SampleStore(moved))
    assert builder(_seq([row], counter)).n_tokens == counter.count(row)["n_tokens"]
    (moved / "video_frames" / "frames" / frames_file.rsplit("/", 1)[-1]).unlink()
    builder = PackedBatchBuilder(processor, SampleStore(moved))
    with pytest.raises(MissingMediaError, match=rf"{row['sample_id']}.*frames file missing: .*{key}\.parquet"):
        builder(_seq([row], counter))


def test_missing_image_and_wrong_length_are_clear_errors(normalized, builder, counter, processor, tmp_path):
    row = _row(normalized, "llava_instruct")
    seq = _seq([row], counter)
    seq["lengths"] = [seq["lengths"][0] + 1]
    with pytest.raises(CollateError, match=rf"{row['sample_id']}.*collated to \d+ tokens but the shard says"):
        builder(seq)
    for m in row["messages"]:
        for p in m["content"]:
            if p["type"] == "image":
                p["path"] = str(tmp_path / "gone.jpg")
    with pytest.raises(MissingMediaError, match=rf"{row['sample_id']}.*gone.jpg"):
        builder.samples(row)
