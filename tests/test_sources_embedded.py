"""Each adapter on its source's embedded sample, through the real loader (datasets)."""

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from assets.chatml.normalize import accounting
from assets.contract.conversation import CONVERSATION_SCHEMA

# What each generated sample holds: raw rows, conversations, and the planted bad rows by reason.
EXPECTED = {
    "longalign_10k": (12, 8, {"duplicate_row": 1, "empty_conversation": 1, "invalid_role": 1, "invalid_turn_order": 1}),
    "longalpaca": (6, 5, {"malformed_row": 1}),
    "llava_instruct": (20, 16, {"empty_conversation": 1, "invalid_role": 1, "media_placeholder_mismatch": 1, "missing_media": 1}),
    "m3it": (13, 12, {"missing_media": 1}),
    "mmdu": (7, 6, {"media_placeholder_mismatch": 1}),
    "mantis": (11, 10, {"media_placeholder_mismatch": 1}),
    "arxivqa_interleave": (21, 7, {"missing_media": 1}),
    "sharegpt4v": (6, 5, {"malformed_row": 1}),
    "sharegpt4o": (4, 4, {}),
    "llava_video": (9, 8, {"missing_media": 1}),
    "mlvu": (5, 4, {"malformed_row": 1}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_counts_and_reasons(normalized, name):
    rows_in, n_conv, reasons = EXPECTED[name]
    result = normalized[name]
    assert result.rows_in == rows_in
    assert len(result.conversations) == n_conv
    assert result.reasons() == reasons
    ok, detail = accounting(result)
    assert ok, detail


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_conversation_meets_the_contract(normalized, name):
    for conv in normalized[name].conversations:
        roles = [m["role"] for m in conv.messages]
        body = roles[1:] if roles[0] == "system" else roles
        assert body[0] == "user" and body[-1] == "assistant"
        assert all(a != b for a, b in zip(body, body[1:]))
        for m in conv.messages:
            for part in m["content"]:
                if part["type"] == "text":
                    assert part["text"].strip()
                else:
                    assert Path(part["path"]).is_file(), part
    table = normalized[name].conversation_table()
    assert table.schema.equals(CONVERSATION_SCHEMA)
    assert len(set(table.column("sample_id").to_pylist())) == table.num_rows


def test_raw_tables_keep_the_published_schema(fetched):
    cols = {name: set(f.columns) for name, f in fetched.items()}
    assert {"dataset", "id", "length", "messages"} <= cols["longalign_10k"]
    assert {"instruction", "output", "input", "file"} <= cols["longalpaca"]
    assert {"id", "image", "conversations"} <= cols["llava_instruct"]
    assert {"instruction", "inputs", "outputs", "image"} <= cols["m3it"]
    assert {"id", "images", "conversation", "source"} <= cols["mantis"]
    assert {"id", "image", "question", "options", "label", "rationale"} <= cols["arxivqa_interleave"]
    assert {"video_id", "video_path", "captions", "zip_folder"} <= cols["sharegpt4v"]
    assert {"id", "conversations", "data_source", "video"} <= cols["llava_video"]
    assert {"video", "duration", "question", "candidates", "answer", "question_type"} <= cols["mlvu"]
    first = pq.read_table(fetched["llava_instruct"].data_path).slice(0, 1).to_pylist()[0]
    assert first["conversations"][0]["from"] == "human"
    assert first["conversations"][0]["value"].startswith("<image>\n")


def test_llava_image_goes_where_the_placeholder_was(normalized):
    conv = normalized["llava_instruct"].conversations[0]
    first = conv.messages[0]
    assert first["role"] == "user"
    assert [p["type"] for p in first["content"]] == ["image", "text"]
    assert first["content"][1]["text"].endswith("?")
    assert first["content"][0]["path"].endswith(".jpg")


def test_mmdu_binds_images_in_order_and_accepts_imagehere(normalized, fetched):
    raw = pq.read_table(fetched["mmdu"].data_path).to_pylist()
    for conv in normalized["mmdu"].conversations:
        (row,) = [raw[i] for i in conv.source_rows]
        paths = [p["path"] for m in conv.messages for p in m["content"] if p["type"] == "image"]
        assert [Path(p).name for p in paths] == [Path(r).name for r in row["image"]]
    assert any("<ImageHere>" in r["conversations"][0]["value"] for r in raw)


def test_inline_images_are_written_once_by_content(normalized):
    for name in ("m3it",):
        paths = [p["path"] for c in normalized[name].conversations for m in c.messages for p in m["content"] if p["type"] == "image"]
        assert len(paths) == 12 and all(Path(p).stat().st_size > 0 for p in paths)


def test_arxivqa_is_regrouped_into_interleaved_dialogues_per_paper(normalized, fetched):
    raw = pq.read_table(fetched["arxivqa_interleave"].data_path).to_pylist()
    convs = normalized["arxivqa_interleave"].conversations
    sizes = sorted(len(c.source_rows) for c in convs)
    assert sizes == [1, 3, 3, 3, 3, 3, 4]  # first paper has 5 figures: 4 + 1 (group size 4)
    for conv in convs:
        papers = {raw[i]["image"].split("/")[1].split("_")[0] for i in conv.source_rows}
        assert len(papers) == 1
        n_images = sum(p["type"] == "image" for m in conv.messages for p in m["content"])
        assert n_images == len(conv.source_rows) == len(conv.messages) // 2


def test_video_sources_reference_unpacked_mp4_files(normalized):
    for name in ("sharegpt4v", "sharegpt4o", "llava_video", "mlvu"):
        for conv in normalized[name].conversations:
            videos = [p for m in conv.messages for p in m["content"] if p["type"] == "video"]
            assert len(videos) == 1
            assert videos[0]["path"].endswith(".mp4") and videos[0]["fps"] == 2.0
            assert Path(videos[0]["path"]).read_bytes()[4:8] == b"ftyp"


def test_mlvu_answer_becomes_the_option_letter(normalized, fetched):
    raw = pq.read_table(fetched["mlvu"].data_path).to_pylist()
    for conv in normalized["mlvu"].conversations:
        row = raw[conv.source_rows[0]]
        letter = "ABCD"[row["candidates"].index(row["answer"])]
        assert conv.messages[1]["content"][0]["text"] == f"({letter}) {row['answer']}"


def test_special_tokens_and_stray_symbols_are_removed(normalized, fetched):
    raw = pq.read_table(fetched["longalign_10k"].data_path).to_pylist()
    dirty = [i for i, r in enumerate(raw) if r["messages"] and "<|im_start|>" in r["messages"][0]["content"]]
    assert dirty
    conv = next(c for c in normalized["longalign_10k"].conversations if c.source_rows == [dirty[0]])
    text = conv.messages[0]["content"][0]["text"]
    assert "<|im_start|>" not in text and "<|im_end|>" not in text and "</s>" not in text
    alpaca = "".join(p["text"] for c in normalized["longalpaca"].conversations for m in c.messages for p in m["content"])
    assert "\u200b" not in alpaca and "\ufffd" not in alpaca


def test_sample_ids_are_stable_across_refetch_and_reordering(normalized, fetched, tmp_path):
    from assets.chatml.normalize import normalize_source
    from assets.contract.media import MediaResolver
    from assets.sources.registry import get_source

    spec = get_source("llava_instruct")
    rows = pq.read_table(fetched["llava_instruct"].data_path).to_pylist()
    again = normalize_source(spec, list(reversed(rows)), MediaResolver(list(fetched["llava_instruct"].media_roots), tmp_path))
    before = {c.sample_id for c in normalized["llava_instruct"].conversations}
    assert {c.sample_id for c in again.conversations} == before


@pytest.mark.parametrize("name", ["llava_video", "mantis", "longalign_10k"])
def test_max_rows_streams_only_the_first_rows(fetched, name, tmp_path):
    """The streaming path a user takes against a huge hub source, on the local sample."""
    from assets.sources.hub import HubSettings, load_rows
    from assets.sources.registry import get_source

    spec = get_source(name)
    full = pq.read_table(fetched[name].data_path).to_pylist()
    head = load_rows(spec, fetched[name].location, HubSettings(max_rows=3))
    assert len(head) == 3
    assert head.to_list() == full[:3]
