"""What a training rank holds: a sample is read by key from memory-mapped Arrow, never the
whole conversation tables, packed sequences or a dict of every sample id.

The synthetic set is small enough for CI (about 40 MB as Python rows) and large enough that
holding it would be obvious; the bounds are on Python allocations (tracemalloc) and Arrow's
allocator, which memory-mapped reads do not use."""

from __future__ import annotations

import gc
import random
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assets.contract.conversation import CONVERSATION_SCHEMA
from training.collator import (
    SampleNotFoundError,
    SampleStore,
    load_packed_rows,
    open_packed_rows,
)
from training.sample_index import MappedTable, key_hash

N_SAMPLES = 30_000
N_SEQUENCES = 6_000


def _conversations(start: int, n: int) -> pa.Table:
    rows = []
    for k in range(start, start + n):
        text = f"question {k} " + "lorem ipsum dolor sit amet " * 12
        rows.append({
            "sample_id": f"s{k:08d}", "source": "synth", "category": "long_text",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": text, "path": None, "fps": None, "max_frames": None}]},
                {"role": "assistant", "content": [{"type": "text", "text": f"answer {k}", "path": None, "fps": None,
                                                   "max_frames": None}]},
            ],
            "source_rows": [k], "n_images": 0, "n_videos": 0, "n_chars": len(text) + 10,
        })
    return pa.Table.from_pylist(rows, schema=CONVERSATION_SCHEMA)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    root = tmp_path_factory.mktemp("big-root")
    path = root / "chatml" / "synth" / "conversations.parquet"
    path.parent.mkdir(parents=True)
    with pq.ParquetWriter(path, CONVERSATION_SCHEMA) as writer:
        for start in range(0, N_SAMPLES, 5_000):
            writer.write_table(_conversations(start, 5_000))
    ids = [f"s{k:08d}" for k in range(N_SAMPLES)]
    seqs = [{"seq_id": f"seq-{i}", "mode": "isolated", "sample_ids": ids[5 * i:5 * i + 5], "sources": ["synth"] * 5,
             "lengths": [100] * 5, "capacity": 8192} for i in range(N_SEQUENCES)]
    (root / "packed").mkdir()
    pq.write_table(pa.Table.from_pylist(seqs), root / "packed" / "sequences.parquet", row_group_size=2_000)
    return root, seqs


def _held(fn):
    """(result, Python bytes still held after gc, Python peak bytes, Arrow bytes held) of ``fn()``."""
    gc.collect()
    pool = pa.default_memory_pool()
    arrow0 = pool.bytes_allocated()
    tracemalloc.start()
    try:
        out = fn()
        gc.collect()
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return out, held, peak, pool.bytes_allocated() - arrow0


def test_a_rank_holds_only_the_rows_it_reads(big):
    root, _ = big
    SampleStore(root).conversation("s00000000", "synth")  # build the index once (as the first rank does)
    open_packed_rows(root / "packed", root)
    rng = random.Random(0)
    picks = rng.sample(range(N_SEQUENCES), 200)

    def read_by_key():
        store = SampleStore(root)
        rows = open_packed_rows(root / "packed", root)
        got = []
        for i in picks:
            row = rows[i]
            got.append((row["seq_id"], [store.conversation(s, "synth")["messages"][1]["content"][0]["text"]
                                        for s in row["sample_ids"]]))
        return store, rows, got

    (store, rows, got), held, peak, arrow = _held(read_by_key)
    assert len(rows) == N_SEQUENCES and len(got) == 200
    assert got[0] == (f"seq-{picks[0]}", [f"answer {5 * picks[0] + j}" for j in range(5)])
    assert all(seq_id == f"seq-{i}" and texts == [f"answer {5 * i + j}" for j in range(5)]
               for (seq_id, texts), i in zip(got, picks))
    # what stays: the store, the mapped readers and the 200 x 5 answers read; no table, no id dict
    assert held < 1_000_000 and peak < 3_000_000 and arrow < 1_000_000, (held, peak, arrow)

    def whole_tables():  # the previous collator: every sequence, every conversation, a dict of ids
        packed = load_packed_rows(root / "packed")
        table = pq.read_table(root / "chatml" / "synth" / "conversations.parquet")
        index = {sid: i for i, sid in enumerate(table.column("sample_id").to_pylist())}
        return packed, table, index

    _, held_whole, _, arrow_whole = _held(whole_tables)
    print(f"by key: {held} B held, {peak} B peak, {arrow} B Arrow; whole tables: {held_whole} B held + {arrow_whole} B Arrow")
    assert held_whole > 20 * held and held_whole + arrow_whole > 10_000_000


def test_building_the_index_streams_the_table(big, tmp_path):
    root, _ = big
    source = root / "chatml" / "synth" / "conversations.parquet"
    table, held, peak, _ = _held(lambda: MappedTable(source, tmp_path, key="sample_id"))
    assert len(table) == N_SAMPLES
    # the build holds a batch of rows and 8 + 8 bytes per row for the hash index, never the table
    assert peak < 4_000_000 + 16 * N_SAMPLES, peak
    assert table.lookup("s00012345")[0]["source_rows"] == [12345]
    assert table.lookup("nope") == []
    stamps = sorted(p.stat().st_mtime_ns for p in tmp_path.iterdir())
    again = MappedTable(source, tmp_path, key="sample_id")  # verified and reused, not rebuilt
    assert sorted(p.stat().st_mtime_ns for p in tmp_path.iterdir()) == stamps and len(again) == N_SAMPLES


def test_a_rewritten_table_gets_a_new_index_and_hash_collisions_are_resolved(tmp_path, monkeypatch):
    source = tmp_path / "t.parquet"
    pq.write_table(pa.table({"k": ["a", "b", "c"], "v": [1, 2, 3]}), source)
    first = MappedTable(source, tmp_path / "idx", key="k")
    assert [r["v"] for r in first.lookup("b")] == [2]
    pq.write_table(pa.table({"k": ["a", "b", "b", "d"], "v": [1, 5, 6, 7]}), source)
    second = MappedTable(source, tmp_path / "idx", key="k")
    assert [r["v"] for r in second.lookup("b")] == [5, 6] and len(second) == 4
    # every key hashing alike: the key comparison still picks the right rows
    import training.sample_index as si

    monkeypatch.setattr(si, "key_hash", lambda key: 7)
    third = MappedTable(source, tmp_path / "idx-collide", key="k")
    assert [r["v"] for r in third.lookup("d")] == [7] and [r["v"] for r in third.lookup("b")] == [5, 6]
    assert key_hash("b") != 7


def test_an_unknown_sample_is_still_a_clear_error(big):
    root, _ = big
    with pytest.raises(SampleNotFoundError, match="no-such"):
        SampleStore(root).conversation("no-such", "synth")
