"""Data plane at scale: the project's raw, chatml and token_counts stages on synthetic sources in
the published schemas, with baselines measured in the same run.

Each stage runs in its own process (as a Dagster step does); this process samples the RSS of
that process tree (the pool workers included) every 0.1 s and reads its CPU time from
``RUSAGE_CHILDREN``. Reported per stage and size: wall, rows/s, CPU-s, cores used
(CPU-s / wall), peak RSS (sum over the tree; also its anonymous part and the stage process's
own) and output bytes; the machine's load average goes with every row, since the host is shared.
token_counts counts with ``counting_processor`` as the asset does: the checked light pair stored
under ``--out``/.counting-cache, so only a model's first run loads the processor (``counter``).

Sources (generated once under ``--out``, streamed to disk):
- ``llava``: LLaVA-Instruct-150K's JSON array (id, image, conversations [{from, value}]), 2-6
  turns, the images a pool of 256 COCO-sized JPEG files (LLaVA reuses COCO images);
- ``m3it``: M3IT's parquet export (instruction, inputs, outputs, base64 ``image_base64_str``),
  every row its own 128x128 JPEG;
- ``longalign``: LongAlign-10k's JSON Lines (messages [{role, content}], id, length, dataset),
  documents of ``--long-words`` words.

Baselines on the same rows:
- ``tokenizer_batched``: the Hugging Face tokenizer's batched call on the rendered ChatML texts
  (``AutoTokenizer`` of the model, its own threads on), the counts compared with ours (text
  tokens + one pad per image);
- ``datasets_map``: ``datasets.map(batched=True, num_proc=all cores)`` rendering and counting;
- ``polars_chatml``: LLaVA's normalisation (roles, placeholders, whitespace) as polars
  expressions in a lazy query written with ``sink_parquet`` (no media checks, no cleaning rules
  beyond whitespace: a lower bound on the work).

    python -m benchmarks.data_scale --out /tmp/data-scale --llava 10000,100000 --m3it 20000 \
        --longalign 1000 --md benchmarks/data_scale.md
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import io
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
IMAGE_POOL = 256


# ----------------------------------------------------------------------------- sources


def _words(rng: random.Random, vocab: list[str], n: int) -> str:
    return " ".join(rng.choices(vocab, k=n))


def _vocab() -> list[str]:
    from assets.sources.embedded.text import corpus

    words = sorted({w.strip(".,;:?!").lower() for doc in corpus(n_documents=200) for w in doc.split()} - {""})
    return words


def gen_llava(folder: Path, rows: int, seed: int = 0) -> Path:
    """``llava_instruct_150k.json`` (one JSON array, written element by element) + images."""
    from PIL import Image

    rng, vocab = random.Random(seed), _vocab()
    images = folder / "coco" / "train2017"
    images.mkdir(parents=True, exist_ok=True)
    for i in range(IMAGE_POOL):
        path = images / f"{i:012d}.jpg"
        if not path.exists():
            Image.effect_noise((320, 240), 40 + i % 60).convert("RGB").save(path, quality=85)
    data = folder / "llava_instruct_150k.json"
    if data.exists():
        return folder
    tmp = data.with_suffix(".tmp")
    with tmp.open("w") as f:
        f.write("[")
        for i in range(rows):
            turns = []
            for t in range(rng.randint(1, 3)):
                q = _words(rng, vocab, rng.randint(8, 20)) + "?"
                turns.append({"from": "human", "value": ("<image>\n" + q) if t == 0 else q})
                turns.append({"from": "gpt", "value": _words(rng, vocab, rng.randint(30, 90)) + "."})
            rec = {"id": f"{i:09d}", "image": f"{rng.randrange(IMAGE_POOL):012d}.jpg", "conversations": turns}
            f.write(("," if i else "") + json.dumps(rec))
        f.write("]")
    tmp.rename(data)
    return folder


def gen_m3it(folder: Path, rows: int, seed: int = 0) -> Path:
    """``data/train-00000.parquet`` in row groups of 1000, each row its own JPEG (base64)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    rng, vocab = random.Random(seed), _vocab()
    data = folder / "data" / "train-00000.parquet"
    if data.exists():
        return folder
    data.parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("instruction", pa.string()), ("inputs", pa.string()), ("outputs", pa.string()),
                        ("image_base64_str", pa.list_(pa.string()))])
    tmp = data.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        for start in range(0, rows, 1000):
            batch = []
            for i in range(start, min(rows, start + 1000)):
                buf = io.BytesIO()
                Image.effect_noise((128, 128), 30 + i % 70).convert("RGB").save(buf, "JPEG", quality=80)
                batch.append({"instruction": "Answer the question about the image.",
                              "inputs": _words(rng, vocab, rng.randint(6, 16)) + f"? ({i})",
                              "outputs": _words(rng, vocab, rng.randint(3, 30)) + ".",
                              "image_base64_str": [base64.b64encode(buf.getvalue()).decode()]})
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    tmp.rename(data)
    return folder


def gen_longalign(folder: Path, rows: int, words: int, seed: int = 0) -> Path:
    """``long.jsonl``: documents of ``words`` words with a question."""
    rng, vocab = random.Random(seed), _vocab()
    data = folder / "long.jsonl"
    if data.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    tmp = data.with_suffix(".tmp")
    with tmp.open("w") as f:
        for i in range(rows):
            doc = _words(rng, vocab, words)
            rec = {"messages": [{"role": "user", "content": doc + "\nWhat is the document about?"},
                                {"role": "assistant", "content": _words(rng, vocab, 60) + "."}],
                   "id": f"doc{i}", "length": words, "dataset": "synthetic"}
            f.write(json.dumps(rec) + "\n")
    tmp.rename(data)
    return folder


def spec_for(kind: str, folder: Path):
    """The registry entry of the source, pointed at the synthetic folder (a declared-style local source)."""
    from assets.sources.registry import MediaSpec, get_source

    name = {"llava": "llava_instruct", "m3it": "m3it", "longalign": "longalign_10k"}[kind]
    base = get_source(name)
    media = base.media
    if kind == "llava":
        media = MediaSpec(kind="files", roots=(str(folder / "coco" / "train2017"),))
    files = {"llava": ("llava_instruct_150k.json",), "m3it": ("data/train-*.parquet",), "longalign": ("long.jsonl",)}[kind]
    return dataclasses.replace(base, files_root=str(folder), data_files=files, origin="declared", media=media)


# ----------------------------------------------------------------------------- stages (child side)


def child(stage: str, args: dict[str, Any]) -> dict[str, Any]:
    """Run one stage in this process; returns what the parent reports beside the measurements."""
    out = Path(args["out"])
    spec = spec_for(args["kind"], Path(args["src"]))
    raw_dir = out / "raw" / spec.name
    conv = out / "chatml" / spec.name / "conversations.parquet"
    if stage == "raw":
        from assets.sources.hub import HubSettings, fetch_source

        fetched = fetch_source(spec, HubSettings(), raw_dir, out / "embedded")
        return {"rows": fetched.rows, "out_dir": str(raw_dir), "extra": str(out / ".hf-cache")}
    if stage == "chatml":
        from assets.chatml.stage import run_chatml

        s = run_chatml(spec, raw_dir, out / "chatml" / spec.name, out / "verdicts",
                       workers=args["workers"], batch_size=args["batch_size"])
        return {"rows": s.rows_in, "ok": s.accounting()[0], "conversations": s.conversations,
                "workers": s.workers, "out_dir": str(out / "chatml" / spec.name)}
    if stage == "token_counts":
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        from assets.tokens.counter_cache import counting_processor
        from assets.tokens.stage import run_token_counts

        # As the asset does: the checked light pair stored by the model files' hash (shared by
        # every run under --out; "loaded" when this run loaded and checked the processor).
        model, loaded = Path(args["model"]), []
        processor = counting_processor(model, Path(args.get("counter_cache") or out.parent.parent / ".counting-cache"), lambda: loaded.append(1) or _processor(model))
        video_dir = out / "video_frames"
        video_dir.mkdir(parents=True, exist_ok=True)
        tok_dir = out / "token_counts" / spec.name
        s = run_token_counts({spec.name: conv}, processor, video_dir, tok_dir,
                             workers=args["workers"], batch_size=args["batch_size"])
        t = pq.read_table(tok_dir / "token_counts.parquet", columns=["n_text_tokens", "n_images"])
        text = int(pc.sum(t.column("n_text_tokens")).as_py() or 0) + int(pc.sum(t.column("n_images")).as_py() or 0)
        return {"rows": s.conversations, "ok": s.conversations == s.counted + s.rejected, "text_tokens": text,
                "workers": s.workers, "out_dir": str(tok_dir), "counter": "loaded" if loaded else "stored"}
    # The baselines need a tokenizer only: the model's own (AutoTokenizer), not the processor.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args["model"])
    if stage == "tokenizer_batched":
        import pyarrow.parquet as pq

        from assets.contract.chat_template import render_chatml

        rows = tokens = 0
        for batch in pq.ParquetFile(conv).iter_batches(batch_size=args["batch_size"], columns=["messages"]):
            texts = [render_chatml(m) for m in batch.column(0).to_pylist()]
            tokens += sum(len(x) for x in tokenizer(texts)["input_ids"])
            rows += len(texts)
        return {"rows": rows, "text_tokens": tokens}
    if stage == "datasets_map":
        import datasets

        from assets.contract.pool import default_workers

        ds = datasets.load_dataset("parquet", data_files=[str(conv)], split="train", cache_dir=str(out / ".ds-cache"))
        tok = tokenizer

        def count(batch):
            from assets.contract.chat_template import render_chatml

            return {"n": [len(x) for x in tok([render_chatml(m) for m in batch["messages"]])["input_ids"]]}

        mapped = ds.map(count, batched=True, batch_size=args["batch_size"], num_proc=default_workers(),
                        remove_columns=ds.column_names, load_from_cache_file=False)
        return {"rows": len(mapped), "text_tokens": int(sum(mapped["n"]))}
    raise SystemExit(f"unknown stage {stage}")


def polars_chatml(args: dict[str, Any]) -> dict[str, Any]:
    """LLaVA rows -> ChatML messages as a polars lazy query (roles, placeholders, whitespace)."""
    import polars as pl

    out = Path(args["out"]) / "polars_chatml"
    out.mkdir(parents=True, exist_ok=True)
    raw = Path(args["out"]) / "raw" / "llava_instruct" / "data.parquet"
    turn = pl.col("conversations")
    q = (
        pl.scan_parquet(raw)
        .with_row_index("row")
        .explode("conversations")
        .with_columns(
            role=pl.when(turn.struct.field("from") == "human").then(pl.lit("user"))
            .when(turn.struct.field("from") == "gpt").then(pl.lit("assistant")).otherwise(pl.lit("invalid")),
            text=turn.struct.field("value").str.replace_all("<image>", "").str.strip_chars()
            .str.replace_all(r"\s+", " "),
            has_image=turn.struct.field("value").str.contains("<image>", literal=True),
        )
        .group_by("row", maintain_order=True)
        .agg(pl.col("id").first(), pl.col("image").first(), pl.struct("role", "text").alias("messages"),
             pl.col("has_image").sum().alias("n_images"))
    )
    q.sink_parquet(out / "conversations.parquet")
    rows = pl.scan_parquet(out / "conversations.parquet").select(pl.len()).collect().item()
    return {"rows": int(rows), "out_dir": str(out)}


def _processor(model: Path):
    from training.processor import load_processor

    return load_processor(model)


# ----------------------------------------------------------------------------- measuring (parent side)


def _status_kb(pid: int) -> dict[str, int]:
    """RssAnon / RssFile / RssShmem of a process (kB), from /proc (empty where not Linux)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in lines) if k in ("RssAnon", "RssFile", "RssShmem")}


def _tree_rss(proc) -> tuple[int, int, int]:
    """(RSS, anonymous RSS, the stage process's own RSS) in bytes, summed over the process tree.
    Anonymous memory is what the stage allocated; the rest of RSS is file pages mapped into
    it (the ``datasets`` Arrow cache, shared libraries), which the kernel can drop."""
    import psutil

    try:
        p = psutil.Process(proc.pid)
        procs = [p, *p.children(recursive=True)]
    except psutil.Error:
        return 0, 0, 0
    total = anon = own = 0
    for q in procs:
        try:
            rss = q.memory_info().rss
        except psutil.Error:
            continue
        total += rss
        anon += _status_kb(q.pid).get("RssAnon", 0) * 1024
        if q.pid == proc.pid:
            own = rss
    return total, anon, own


def _bytes(path: str | None) -> int:
    if not path or not Path(path).exists():
        return 0
    p = Path(path)
    return p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def measure(stage: str, args: dict[str, Any]) -> dict[str, Any]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.data_scale", "--child", stage, json.dumps(args)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = peak_anon = peak_own = 0
    while proc.poll() is None:
        total, anon, own = _tree_rss(proc)
        peak, peak_anon, peak_own = max(peak, total), max(peak_anon, anon), max(peak_own, own)
        time.sleep(0.1)
    wall = time.perf_counter() - start
    stdout, stderr = proc.communicate()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{stage} failed (rc {proc.returncode}):\n{stderr[-3000:]}")
    result = json.loads(lines[-1])
    rows = result.get("rows", 0)
    row = {
        "source": args["label"], "stage": stage, "rows": rows, "wall_s": round(wall, 1),
        "rows_per_s": round(rows / wall, 1) if wall else 0, "cpu_s": round(cpu, 1),
        "cores": round(cpu / wall, 2) if wall else 0, "peak_rss_mb": round(peak / 2**20),
        "peak_anon_mb": round(peak_anon / 2**20), "peak_step_mb": round(peak_own / 2**20),
        "out_mb": round((_bytes(result.get("out_dir")) + _bytes(result.get("extra"))) / 2**20, 1),
        "load": round(load, 1), "load_after": round(os.getloadavg()[0], 1),
        **{k: v for k, v in result.items() if k in ("ok", "text_tokens", "workers", "counter")},
    }
    print(json.dumps(row), flush=True)
    return row


def tiny_model(out: Path) -> Path:
    from assets.sources.embedded.text import corpus
    from training.tiny_model import build_tiny_qwen2_vl

    target = out / "model"
    if not (target / "config.json").exists():
        build_tiny_qwen2_vl(target, corpus(n_documents=200))
    return target


COLUMNS = ["source", "stage", "rows", "wall_s", "rows_per_s", "cpu_s", "cores", "peak_rss_mb", "peak_anon_mb",
           "peak_step_mb", "out_mb", "load",
           "workers", "ok", "text_tokens", "counter"]


def table_md(files: list[Path]) -> str:
    """The measured rows of ``files`` (JSON Lines) as one markdown table, in run order."""
    rows = [json.loads(line) for f in files for line in f.read_text().splitlines() if line.strip()]
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    return head + "".join("| " + " | ".join(str(r.get(c, "")) for c in COLUMNS) + " |\n" for r in rows)


def run(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="/tmp/giraffe-data-scale")
    ap.add_argument("--llava", default="10000", help="comma-separated row counts")
    ap.add_argument("--m3it", default="", help="comma-separated row counts")
    ap.add_argument("--longalign", default="", help="comma-separated document counts")
    ap.add_argument("--long-words", type=int, default=12000, help="words per LongAlign document")
    ap.add_argument("--workers", type=int, default=0, help="0: every core")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--stages", default="raw,chatml,token_counts,tokenizer_batched,datasets_map,polars_chatml")
    ap.add_argument("--results", default=None, help="JSON Lines file the rows are appended to")
    ap.add_argument("--table", nargs="+", default=None, help="print the markdown table of these results files")
    ap.add_argument("--child", nargs=2, metavar=("STAGE", "ARGS"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        stage, args = a.child[0], json.loads(a.child[1])
        result = polars_chatml(args) if stage == "polars_chatml" else child(stage, args)
        print(json.dumps(result), flush=True)
        return 0
    if a.table:
        print(table_md([Path(f) for f in a.table]), end="")
        return 0
    out = Path(a.out)
    model = tiny_model(out)
    stages = a.stages.split(",")
    results = Path(a.results) if a.results else out / "results.jsonl"
    plan = [("llava", int(n)) for n in a.llava.split(",") if n] + [("m3it", int(n)) for n in a.m3it.split(",") if n] \
        + [("longalign", int(n)) for n in a.longalign.split(",") if n]
    for kind, n in plan:
        src = out / "sources" / f"{kind}-{n}"
        t = time.perf_counter()
        if kind == "llava":
            gen_llava(src, n)
        elif kind == "m3it":
            gen_m3it(src, n)
        else:
            gen_longalign(src, n, a.long_words)
        print(f"# {kind} {n}: source ready in {time.perf_counter() - t:.0f} s ({_bytes(str(src)) / 2**20:.0f} MB)", flush=True)
        args = {"kind": kind, "src": str(src), "out": str(out / "runs" / f"{kind}-{n}"), "model": str(model), "counter_cache": str(out / ".counting-cache"),
                "workers": a.workers, "batch_size": a.batch_size, "label": f"{kind} {n // 1000}K" if n >= 1000 else f"{kind} {n}"}
        for stage in stages:
            if stage == "polars_chatml" and kind != "llava":
                continue
            row = measure(stage, args)
            with results.open("a") as f:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run())
