"""Benchmark: what one training rank holds to collate, the previous way and by key.

    python -m benchmarks.collator_memory [--samples 200000] [--lookups 2000]

(as a module: ``benchmarks/training.py`` would shadow the ``training`` package as a script)

A synthetic data root: ``--samples`` text conversations in the ChatML schema (about 0.5 kB of
text each, written in row groups) and packed sequences of 5 samples each. Each way runs in a
fresh process and reports its peak RSS above the process after imports, plus the time to
open and per lookup:

* ``whole``: what the collator did before: every packed row as a Python dict
  (``load_packed_rows``), the conversation table read whole with a dict of its sample ids;
* ``by key``: ``open_packed_rows`` + ``SampleStore`` over memory-mapped Arrow copies (the
  index built once beforehand, as the first rank on a host does; its build is timed apart).

Both read the same ``--lookups`` random sequences and every conversation in them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rss_mb(kind: str = "VmRSS") -> float:
    """Resident MB: ``VmRSS`` all, ``RssAnon`` private to this process, ``RssFile`` file pages
    (memory-mapped files: the page cache, shared by every process mapping them, reclaimable)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(kind + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_root(root: Path, n: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from assets.contract.conversation import CONVERSATION_SCHEMA

    path = root / "chatml" / "synth" / "conversations.parquet"
    path.parent.mkdir(parents=True)
    with pq.ParquetWriter(path, CONVERSATION_SCHEMA) as writer:
        for start in range(0, n, 10_000):
            rows = []
            for k in range(start, min(n, start + 10_000)):
                text = f"question {k} " + "lorem ipsum dolor sit amet " * 18
                part = {"type": "text", "path": None, "fps": None, "max_frames": None}
                rows.append({"sample_id": f"s{k:09d}", "source": "synth", "category": "long_text",
                             "messages": [{"role": "user", "content": [{**part, "text": text}]},
                                          {"role": "assistant", "content": [{**part, "text": f"answer {k}"}]}],
                             "source_rows": [k], "n_images": 0, "n_videos": 0, "n_chars": len(text)})
            writer.write_table(pa.Table.from_pylist(rows, schema=CONVERSATION_SCHEMA))
    seqs = [{"seq_id": f"seq-{i}", "mode": "isolated", "sample_ids": [f"s{k:09d}" for k in range(5 * i, 5 * i + 5)],
             "sources": ["synth"] * 5, "lengths": [160] * 5, "capacity": 8192} for i in range(n // 5)]
    (root / "packed").mkdir()
    pq.write_table(pa.Table.from_pylist(seqs), root / "packed" / "sequences.parquet", row_group_size=10_000)


def run_way(way: str, root: Path, lookups: int) -> dict:
    import pyarrow.parquet as pq

    from training.collator import SampleStore, load_packed_rows, open_packed_rows

    base, anon, mapped = rss_mb(), rss_mb("RssAnon"), rss_mb("RssFile")
    t = time.perf_counter()
    if way == "whole":
        rows = load_packed_rows(root / "packed")
        table = pq.read_table(root / "chatml" / "synth" / "conversations.parquet")
        index = {sid: i for i, sid in enumerate(table.column("sample_id").to_pylist())}

        def conversation(sid):
            return table.slice(index[sid], 1).to_pylist()[0]
    else:
        rows = open_packed_rows(root / "packed", root)
        store = SampleStore(root)

        def conversation(sid):
            return store.conversation(sid, "synth")
    opened = time.perf_counter() - t
    picks = random.Random(0).sample(range(len(rows)), lookups)
    t = time.perf_counter()
    n = 0
    for i in picks:
        for sid in rows[i]["sample_ids"]:
            n += len(conversation(sid)["messages"])
    per = (time.perf_counter() - t) / lookups
    return {"way": way, "open_s": opened, "ms_per_sequence": per * 1e3, "rss_mb": rss_mb() - base, "anon_mb": rss_mb("RssAnon") - anon,
            "file_mb": rss_mb("RssFile") - mapped,
            "peak_mb": peak_mb() - base, "messages": n}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=200_000)
    ap.add_argument("--lookups", type=int, default=2_000)
    ap.add_argument("--way")
    ap.add_argument("--root")
    args = ap.parse_args()
    if args.way:
        print(json.dumps(run_way(args.way, Path(args.root), args.lookups)))
        return
    print(f"{os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.2f}; {args.samples} samples, "
          f"{args.samples // 5} sequences, {args.lookups} sequences read")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_root(root, args.samples)
        size = sum(p.stat().st_size for p in root.rglob("*.parquet"))
        from training.collator import SampleStore, open_packed_rows

        t = time.perf_counter()
        SampleStore(root).conversation("s000000000", "synth")
        open_packed_rows(root / "packed", root)
        build = time.perf_counter() - t
        index = sum(p.stat().st_size for p in (root / "collator_index").iterdir())
        print(f"parquet {size / 1e6:.0f} MB; index built once in {build:.1f} s, {index / 1e6:.0f} MB on disk\n")
        print("| way | open s | ms per sequence (5 samples) | RSS held MB | of it private (anon) MB | of it mapped files "
              "(shared page cache) MB | peak RSS MB |")
        print("|---|---|---|---|---|---|---|")
        for way in ("whole", "by key"):
            out = subprocess.run([sys.executable, "-m", "benchmarks.collator_memory", "--way", way, "--root", str(root),
                                  "--lookups", str(args.lookups)], capture_output=True, text=True, check=True,
                                 env={**os.environ, "PYTHONPATH": os.getcwd()})
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {way} | {r['open_s']:.2f} | {r['ms_per_sequence']:.2f} | {r['rss_mb']:.0f} | {r['anon_mb']:.0f} | "
                  f"{r['file_mb']:.0f} | {r['peak_mb']:.0f} |", flush=True)
        print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
