"""The data stages stream: peak memory is set by the batch size, not by the source.

A stage runs in a subprocess under an address-space limit (``RLIMIT_AS``) set a fixed margin
above what the process holds after its imports. The source is larger than that margin as
Python objects, so the whole-source path (every row as a dict, as the stages did before) dies
with ``MemoryError`` under the same limit, while the streamed stage finishes with every
sample accounted for. The process pool gives the same tables as one process, and the raw
stage reads a JSON array through its JSON Lines copy with the same rows.
"""

from __future__ import annotations

import base64
import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parent.parent
ROWS, WORDS = 4000, 2500  # ~55 MB of text; three times that or more as Python objects and tables
MARGIN_MB = 120


def _long_text_source(folder: Path) -> Path:
    """A LongAlign-style raw folder (data.parquet + manifest.json), written row group by row group."""
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(5000)]
    schema = pa.schema([("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
                        ("id", pa.string()), ("length", pa.int64()), ("dataset", pa.string())])
    folder.mkdir(parents=True)
    data = folder / "data.parquet"
    with pq.ParquetWriter(data, schema) as writer:
        for start in range(0, ROWS, 250):
            rows = [{"messages": [{"role": "user", "content": " ".join(rng.choices(vocab, k=WORDS)) + " Summarise?"},
                                  {"role": "assistant", "content": f"Summary {i}."}],
                     "id": str(i), "length": WORDS, "dataset": "synthetic"} for i in range(start, start + 250)]
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))
    (folder / "manifest.json").write_text(json.dumps({"data_path": str(data), "media_roots": []}))
    return folder


CHILD = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    from assets.chatml.stage import run_chatml
    from assets.chatml.normalize import normalize_source
    from assets.contract.media import MediaResolver
    from assets.sources.records import read_rows
    from assets.sources.registry import get_source

    mode, raw, out, margin = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    spec = get_source("longalign_10k")
    import pyarrow.parquet as pq  # start Arrow's thread pools (their stacks) before the limit
    next(pq.ParquetFile(raw / "data.parquet").iter_batches(batch_size=8))
    held = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize:")) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (held + margin * 2**20, resource.RLIM_INFINITY))
    try:
        if mode == "streamed":
            s = run_chatml(spec, raw, out, workers=1, batch_size=64)
            print(json.dumps({"ok": s.accounting()[0], "conversations": s.conversations, "rows": s.rows_in}))
        else:
            result = normalize_source(spec, read_rows(raw / "data.parquet"), MediaResolver([], out))
            print(json.dumps({"ok": True, "conversations": len(result.conversations)}))
    except MemoryError:
        print(json.dumps({"memory_error": True}))
""")


def _child(mode: str, raw: Path, out: Path) -> dict:
    import os

    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}  # glibc reserves 64 MB of address space per arena
    proc = subprocess.run([sys.executable, "-c", CHILD, mode, str(raw), str(out), str(MARGIN_MB)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"child {mode} printed no result (rc {proc.returncode}):\n{proc.stderr[-2000:]}"
    return json.loads(lines[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux")
def test_chatml_streams_a_source_larger_than_its_memory_limit(tmp_path):
    raw = _long_text_source(tmp_path / "raw")
    whole = _child("whole", raw, tmp_path / "whole")
    assert whole == {"memory_error": True}, "the limit must be too small for the whole source as Python objects"
    streamed = _child("streamed", raw, tmp_path / "chatml")
    assert streamed == {"ok": True, "conversations": ROWS, "rows": ROWS}
    table = pq.read_table(tmp_path / "chatml" / "conversations.parquet", columns=["source_rows"])
    assert table.column("source_rows").to_pylist() == [[i] for i in range(ROWS)]
    assert pq.ParquetFile(tmp_path / "chatml" / "conversations.parquet").metadata.num_row_groups == -(-ROWS // 64)


def test_the_pool_writes_what_one_process_writes(fetched, tmp_path):
    """m3it (inline images written batch by batch) and llava_instruct (files, a duplicate row)
    over two workers in batches of 3 rows: the same conversations and rejections, in order."""
    from assets.chatml.stage import run_chatml
    from assets.sources.registry import get_source

    for name in ("m3it", "llava_instruct"):
        spec, raw = get_source(name), Path(fetched[name].data_path).parent
        one = run_chatml(spec, raw, tmp_path / "one" / name, workers=1)
        two = run_chatml(spec, raw, tmp_path / "two" / name, workers=2, batch_size=3)
        assert (one.workers, two.workers) == (1, 2) and two.batches == -(-fetched[name].rows // 3)
        assert one.accounting() == two.accounting() and one.accounting()[0]
        assert (one.reasons, one.conversations) == (two.reasons, two.conversations)
        for table in ("conversations.parquet", "rejected.parquet"):
            a = pq.read_table(tmp_path / "one" / name / table).to_pylist()
            b = pq.read_table(tmp_path / "two" / name / table).to_pylist()
            strip = lambda rows, d: json.dumps(rows, default=str).replace(str(tmp_path / d / name), "<out>")  # noqa: E731
            assert strip(a, "one") == strip(b, "two")
        if name == "m3it":
            media = sorted(p.name for p in (tmp_path / "two" / name / "media").iterdir())
            assert media == sorted(p.name for p in (tmp_path / "one" / name / "media").iterdir()) and media


def test_a_json_array_is_read_through_its_json_lines_copy(tmp_path):
    """The copy holds one element per line (pretty-printed elements included), is made once,
    and datasets reads the same rows from it as from the array."""
    import datasets

    from assets.sources.hub import json_lines_copies

    rows = [{"id": str(i), "image": f"{i}.jpg", "conversations": [{"from": "human", "value": f"Q{i}\\n?"},
                                                                   {"from": "gpt", "value": "A"}]} for i in range(7)]
    src = tmp_path / "user" / "llava.json"
    src.parent.mkdir()
    src.write_text(json.dumps(rows, indent=2))
    (copy,) = json_lines_copies([src], tmp_path / "work")
    assert copy != src and copy.parent == tmp_path / "work"
    assert [json.loads(line) for line in copy.read_text().splitlines()] == rows
    mtime = copy.stat().st_mtime_ns
    assert json_lines_copies([src], tmp_path / "work") == [copy] and copy.stat().st_mtime_ns == mtime
    from_copy = datasets.load_dataset("json", data_files=[str(copy)], split="train").to_list()
    from_array = datasets.load_dataset("json", data_files=[str(src)], split="train").to_list()
    assert from_copy == from_array == rows
    lines = tmp_path / "user" / "x.jsonl"
    lines.write_text("\n".join(json.dumps(r) for r in rows))
    assert json_lines_copies([lines], tmp_path / "work") == [lines]  # JSON Lines is read as it is


def test_pooled_token_counts_equal_the_processors_counts(normalized, processor, tmp_path):
    """token_counts over two workers (the tokenizer and the checked patch rule, batches of 4)
    gives every image-bearing and text sample the counts of one process with the processor."""
    from assets.contract.conversation import CONVERSATION_SCHEMA
    from assets.tokens.count import (
        LightProcessor,
        TokenCounter,
        count_table,
        light_processor,
    )
    from assets.tokens.stage import run_token_counts

    assert isinstance(light_processor(processor), LightProcessor)
    inputs, expected = {}, []
    for name in ("m3it", "llava_instruct", "mmdu", "longalpaca"):
        rows = [c.to_row() for c in normalized[name].conversations]
        path = tmp_path / "chatml" / name / "conversations.parquet"
        path.parent.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=CONVERSATION_SCHEMA), path)
        inputs[name] = path
        expected += count_table(rows, TokenCounter(processor, {}))[0]
    summary = run_token_counts(inputs, processor, tmp_path / "video_frames", tmp_path / "out", workers=2, batch_size=4)
    assert summary.workers == 2 and summary.counted == len(expected) and summary.rejected == 0
    assert pq.read_table(tmp_path / "out" / "token_counts.parquet").to_pylist() == expected
    assert sum(c["n_image_tokens"] for c in expected) > 0


def test_counting_workers_get_the_tokenizers_own_backend(normalized, processor):
    """The workers' tokenizer is the Rust backend the transformers tokenizer calls: it pickles
    without transformers, gives the tokenizer's ids on the embedded sample's rendered texts
    (every source, batched and one by one), and a tokenizer whose call does more than its
    backend keeps being used as it is."""
    import pickle

    from assets.contract.chat_template import render_chatml
    from assets.tokens.count import BackendTokenizer, backend_tokenizer, light_processor

    light = light_processor(processor)
    assert isinstance(light.tokenizer, BackendTokenizer)
    restored = pickle.loads(pickle.dumps(light)).tokenizer
    texts = [render_chatml(c.to_row()["messages"]) for name in sorted(normalized) for c in normalized[name].conversations]
    expected = [list(x) for x in processor.tokenizer(texts)["input_ids"]]
    assert len(texts) > 50 and restored(texts)["input_ids"] == expected
    assert restored.lengths(texts) == [len(x) for x in expected]
    assert [restored(t)["input_ids"] for t in texts[:10]] == expected[:10]

    class Marked:
        """A tokenizer that adds a token its backend does not (as a Python-side BOS would)."""

        backend_tokenizer = processor.tokenizer.backend_tokenizer

        def __call__(self, text, return_attention_mask=False):
            ids = processor.tokenizer(text)["input_ids"]
            return {"input_ids": [[1, *x] for x in ids] if not isinstance(text, str) else [1, *ids]}

    marked = Marked()
    assert backend_tokenizer(marked) is marked


RAW_DOCS = 3600  # ~160 MB of Arrow cache, in batches of ~10 MB (datasets reads JSON in 10 MB blocks)
RAW_CHILD = textwrap.dedent("""
    import dataclasses, json, sys
    from pathlib import Path
    from assets.sources.hub import HubSettings, cache_files_of, load_rows, write_batches, write_cache_batches
    from assets.sources.records import normalize_table
    from assets.sources.registry import get_source

    mode, src, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    spec = dataclasses.replace(get_source("longalign_10k"), files_root=str(src), data_files=("long.jsonl",), origin="declared")
    ds = load_rows(spec, "", HubSettings(), cache_dir=out / "cache")  # the Arrow cache (built by the first child)
    files = cache_files_of(ds)
    status = lambda key: next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key))
    open("/proc/self/clear_refs", "w").write("5")  # restart the peak (VmHWM) from the current RSS
    base = status("VmRSS:")
    if mode == "streamed":
        write_cache_batches(files, ds.data.schema, out / "streamed.parquet", 64)
    elif mode == "mapped":
        write_batches(normalize_table(ds.data.table), out / "mapped.parquet", 64)
    print(json.dumps({"grown_mb": (status("VmHWM:") - base) / 1024, "rows": ds.num_rows,
                      "cache_mb": sum(f.stat().st_size for f in files) / 2**20}))
""")


def _raw_child(mode: str, src: Path, out: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", RAW_CHILD, mode, str(src), str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"child {mode} printed no result (rc {proc.returncode}):\n{proc.stderr[-2000:]}"
    return json.loads(lines[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/clear_refs is Linux")
def test_raw_reads_the_datasets_cache_without_holding_its_pages(tmp_path):
    """The raw stage writes data.parquet from the ``datasets`` cache batch by batch with plain
    reads: its peak resident memory grows by a fraction of the cache, where the memory-mapped
    table (the earlier path) keeps every page of the cache resident. Same bytes either way."""
    rng = random.Random(3)
    vocab = [f"w{i}" for i in range(5000)]
    src = tmp_path / "src"
    src.mkdir()
    with (src / "long.jsonl").open("w") as f:
        for i in range(RAW_DOCS):
            doc = " ".join(rng.choices(vocab, k=8000))
            f.write(json.dumps({"messages": [{"role": "user", "content": doc}, {"role": "assistant", "content": f"A{i}."}],
                                "id": f"d{i}", "length": 8000, "dataset": "synthetic"}) + "\n")
    _raw_child("build", src, tmp_path)
    streamed, mapped = _raw_child("streamed", src, tmp_path), _raw_child("mapped", src, tmp_path)
    assert streamed["rows"] == mapped["rows"] == RAW_DOCS and streamed["cache_mb"] > 150
    assert mapped["grown_mb"] > 0.8 * mapped["cache_mb"], mapped  # the earlier path: the whole cache resident
    assert streamed["grown_mb"] < 0.5 * streamed["cache_mb"], streamed  # a few 10 MB batches, whatever the size
    assert (tmp_path / "streamed.parquet").read_bytes() == (tmp_path / "mapped.parquet").read_bytes()


def test_parquet_batches_hold_one_batch_not_the_file(tmp_path):
    """Streaming a Parquet file of 200 row groups (~40 MB of text) holds about one row group
    of Arrow memory at a time; the pre-buffered default reader (what the stages used) holds
    every column chunk it has read until the end, growing with the file."""
    from assets.contract.parquet_stream import parquet_batches

    rng = random.Random(5)
    path = tmp_path / "many.parquet"
    schema = pa.schema([("id", pa.int64()), ("text", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for g in range(200):
            writer.write_table(pa.table({"id": list(range(g * 100, g * 100 + 100)),
                                         "text": ["".join(rng.choices("abcdefghij ", k=2000)) for _ in range(100)]}, schema=schema))

    def peak_mb(batches) -> tuple[float, int]:
        base, peak, rows = pa.total_allocated_bytes(), 0, 0
        for batch in batches:
            rows += batch.num_rows
            peak = max(peak, pa.total_allocated_bytes() - base)
            del batch
        return peak / 2**20, rows

    file_mb = path.stat().st_size / 2**20
    streamed, rows = peak_mb(parquet_batches(path, 64, ["id", "text"]))
    buffered, rows_b = peak_mb(pq.ParquetFile(path).iter_batches(batch_size=64, columns=["id", "text"]))
    assert rows == rows_b == 20_000 and file_mb > 30
    assert buffered > 0.5 * file_mb, (buffered, file_mb)
    assert streamed < 0.1 * file_mb, (streamed, file_mb)


def test_token_counts_steps_load_the_processor_once_per_model(normalized, processor, tiny_model_dir, tmp_path):
    """The first step checks the light pair against the processor and stores it; the next
    ones count with the stored pair without loading the processor, with the processor's
    counts. Changed model files, or a damaged stored file, load and check again."""
    import shutil

    from assets.tokens.count import LightProcessor, TokenCounter, count_table
    from assets.tokens.counter_cache import counting_processor, model_key

    loads = []

    def load(proc=processor):
        loads.append(1)
        return proc

    def refuse():
        raise AssertionError("the stored pair should have been used")

    cache = tmp_path / "cache"
    first = counting_processor(tiny_model_dir, cache, load)
    assert isinstance(first, LightProcessor) and len(loads) == 1
    (stored,) = cache.iterdir()
    assert stored.name == f"{model_key(tiny_model_dir)}.json"
    again = counting_processor(tiny_model_dir, cache, refuse)
    rows = [c.to_row() for name in ("m3it", "llava_instruct", "mmdu") for c in normalized[name].conversations]
    assert count_table(rows, TokenCounter(again, {})) == count_table(rows, TokenCounter(processor, {}))

    other = tmp_path / "model"
    shutil.copytree(tiny_model_dir, other)
    config = json.loads((other / "tokenizer_config.json").read_text())
    (other / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 123}))
    assert model_key(other) != model_key(tiny_model_dir)
    counting_processor(other, cache, load)
    assert len(loads) == 2 and len(list(cache.iterdir())) == 2

    stored.write_text(stored.read_text()[:1000])  # cut short
    assert isinstance(counting_processor(tiny_model_dir, cache, load), LightProcessor) and len(loads) == 3
    assert isinstance(counting_processor(tiny_model_dir, cache, refuse), LightProcessor)  # stored again, whole


PARQUET_CHILD = textwrap.dedent("""
    import dataclasses, json, sys
    from pathlib import Path
    import datasets
    from assets.sources.hub import HubSettings, load_rows
    from assets.sources.registry import get_source

    mode, src, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    spec = dataclasses.replace(get_source("m3it"), files_root=str(src), data_files=("data/*.parquet",), origin="declared")
    status = lambda key: next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key))
    base = status("VmRSS:")
    if mode == "ours":
        ds = load_rows(spec, "", HubSettings(), cache_dir=out / "ours")
    else:  # the parquet builder with its defaults
        ds = datasets.load_dataset("parquet", data_files=[str(p) for p in sorted((src / "data").glob("*.parquet"))],
                                   split="train", cache_dir=str(out / "default"))
    print(json.dumps({"grown_mb": (status("VmHWM:") - base) / 1024, "rows": ds.num_rows}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux")
def test_raw_builds_a_parquet_source_without_holding_the_file(tmp_path):
    """The raw stage's ``datasets`` load of a Parquet source (M3IT's export) reads it without
    pre-buffering: the parquet builder's default grows by the added size when the file doubles
    (it keeps the whole file resident while it writes the Arrow cache), and ours stays well
    below it. Compared across two sizes and against the default in the same run because what
    both hold (the builder, the cache writer) is 60-90 MB and differs between hosts and loads."""
    schema = pa.schema([("instruction", pa.string()), ("inputs", pa.string()), ("outputs", pa.string()),
                        ("image_base64_str", pa.list_(pa.string()))])
    got, file_mb = {}, {}
    for groups in (120, 240):
        rng = random.Random(11)
        root = tmp_path / f"g{groups}"
        data = root / "src" / "data" / "train-00000.parquet"
        data.parent.mkdir(parents=True)
        with pq.ParquetWriter(data, schema) as writer:
            for g in range(groups):  # row groups of ~1 MB of incompressible base64, as M3IT's images are
                rows = [{"instruction": "Answer.", "inputs": f"q{g}-{i}", "outputs": "a",
                         "image_base64_str": [base64.b64encode(rng.randbytes(7500)).decode()]} for i in range(100)]
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
        file_mb[groups] = data.stat().st_size / 2**20
        for mode in ("ours", "default"):
            proc = subprocess.run([sys.executable, "-c", PARQUET_CHILD, mode, str(root / "src"), str(root)],
                                  cwd=ROOT, capture_output=True, text=True, timeout=900)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
            assert lines, f"child {mode} printed no result (rc {proc.returncode}):\n{proc.stderr[-2000:]}"
            got[mode, groups] = json.loads(lines[-1])
    assert [got[mode, g]["rows"] for g in (120, 240) for mode in ("ours", "default")] == [12_000] * 2 + [24_000] * 2
    added = file_mb[240] - file_mb[120]
    assert added > 100
    grown = {mode: got[mode, 240]["grown_mb"] - got[mode, 120]["grown_mb"] for mode in ("ours", "default")}
    assert grown["default"] > 0.8 * added, (got, file_mb)  # the baseline holds the file: the comparison can fail
    # ours stays at least half the larger file below it (idle host: +78 MB against +295 MB; a
    # suite run on a loaded host: +164 MB against +308 MB, the allocator returning pages later)
    assert got["ours", 240]["grown_mb"] < got["default", 240]["grown_mb"] - 0.5 * file_mb[240], (got, file_mb)


def test_text_tokens_tokenize_at_most_a_bounded_text_per_call(processor, monkeypatch):
    """Long documents are tokenised in calls of at most TEXT_CHARS_PER_CALL characters (a
    longer document alone), in order, with the counts of one call over the whole batch."""
    from assets.tokens import count
    from assets.tokens.count import TokenCounter, light_processor

    monkeypatch.setattr(count, "TEXT_CHARS_PER_CALL", 20_000)
    rng = random.Random(2)
    rows = [{"messages": [{"role": "user", "content": [{"type": "text", "text": " ".join(
        rng.choices(["alpha", "beta", "gamma", "delta", "x"], k=n))}]}]} for n in (100, 3000, 1500, 9000, 10, 2500, 2500)]
    texts = [count.render_chatml(r["messages"]) for r in rows]
    expected = [len(x) for x in processor.tokenizer(texts)["input_ids"]]
    light = light_processor(processor)
    calls = []
    real = type(light.tokenizer).lengths
    monkeypatch.setattr(type(light.tokenizer), "lengths", lambda self, group: calls.append(list(group)) or real(self, group))
    assert TokenCounter(light, {}).text_tokens(rows) == expected
    assert [t for group in calls for t in group] == texts and len(calls) > 2
    assert all(len(group) == 1 or sum(map(len, group)) <= 20_000 for group in calls)
    assert TokenCounter(processor, {}).text_tokens(rows) == expected  # the transformers tokenizer, grouped the same way


def test_the_stages_batches_are_bounded_in_rows_and_in_bytes(monkeypatch):
    """Left to choose, a stage spreads every core over batches of at most 512 rows, at least
    4 per worker, and about BATCH_BYTES of data each (long documents); workers set in config
    keep the configured batch size; a small source runs in one process."""
    from assets.contract import pool

    monkeypatch.setattr(pool, "default_workers", lambda: 2)
    assert pool.plan_workers(0, 1_000_000, 512, 1_000_000 * 1_100) == (2, 512)  # LLaVA rows
    assert pool.plan_workers(0, 1_000, 512, 1_000 * 60_000) == (2, 125)  # 4 batches per worker
    workers, batch = pool.plan_workers(0, 10_000, 512, 10_000 * 60_000)  # 60 KB documents
    assert workers == 2 and batch == pool.BATCH_BYTES // 60_000 and batch * 60_000 <= pool.BATCH_BYTES
    assert pool.plan_workers(2, 10_000, 512, 10_000 * 60_000) == (2, 512)
    assert pool.plan_workers(0, 10_000, 512, pool.POOL_MIN_BYTES - 1) == (1, 512)


def test_the_json_lines_copy_drops_the_mapped_pages_it_has_copied(tmp_path, monkeypatch):
    """Dropping the copied part of the source's memory map every few pages (as every 64 MB of a
    real source) leaves the copy byte for byte what one pass over the whole map writes."""
    from assets.sources import hub

    rows = [{"id": str(i), "conversations": [{"from": "human", "value": "q " * (i % 50)}, {"from": "gpt", "value": "a\\n" * 3}]}
            for i in range(3000)]
    src = tmp_path / "user" / "llava.json"
    src.parent.mkdir()
    src.write_text(json.dumps(rows, indent=1))
    (whole,) = hub.json_lines_copies([src], tmp_path / "whole")
    monkeypatch.setattr(hub, "DROP_MAPPED_BYTES", 3 * 4096)
    (dropped,) = hub.json_lines_copies([src], tmp_path / "dropped")
    assert src.stat().st_size > 40 * hub.DROP_MAPPED_BYTES  # dropped some 40 times
    assert dropped.read_bytes() == whole.read_bytes()
    assert [json.loads(line) for line in dropped.read_text().splitlines()] == rows
