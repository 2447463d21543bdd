"""``giraffe pack LENGTHS.parquet --capacity N [--out PACKED.parquet]``: pack lengths alone.

Reads ``sample_id, n_tokens`` (any other columns are ignored), packs with the pipeline's
best-fit decreasing (``assets.packing.kernel.pack``) and prints one JSON line
``{"bins", "fill", "rejected", "seconds", ...}``. With ``--out`` it writes one row per input
sample, in input order: ``sample_id, n_tokens, bin, offset`` (null bin/offset for a sample
longer than the capacity, with ``reason`` = ``longer_than_capacity``). Bad input (missing
file, missing columns, null or non-positive lengths) exits with status 2 and one line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from pipelines.cli_args import positive_int


class InputError(Exception):
    pass


def read_lengths(path: str):
    """(sample_ids, lengths int64 array) from a parquet file, or InputError saying why."""
    import numpy as np
    import pyarrow.parquet as pq

    if not Path(path).is_file():
        raise InputError(f"file not found: {path}")
    try:
        schema = pq.read_schema(path)
    except Exception as exc:
        raise InputError(f"not a readable parquet file: {exc}") from None
    missing = [c for c in ("sample_id", "n_tokens") if c not in schema.names]
    if missing:
        raise InputError(f"missing columns {missing} (has {schema.names})")
    table = pq.read_table(path, columns=["sample_id", "n_tokens"])
    col = table.column("n_tokens")
    if col.null_count:
        raise InputError(f"{col.null_count} rows have no n_tokens")
    try:
        lengths = col.to_numpy(zero_copy_only=False).astype(np.int64, casting="safe")
    except TypeError:
        raise InputError(f"n_tokens must be integers, got {col.type}") from None
    if lengths.size and lengths.min() < 1:
        i = int(np.flatnonzero(lengths < 1)[0])
        raise InputError(f"n_tokens must be positive: row {i} ({table.column('sample_id')[i].as_py()}) has {int(lengths[i])}")
    return table.column("sample_id"), lengths


def cmd_pack(args: argparse.Namespace) -> int:
    import numpy as np
    import pyarrow as pa

    from assets.contract.atomic import write_parquet
    from assets.packing.kernel import pack

    try:
        if args.capacity < 1:
            raise InputError(f"--capacity must be positive, got {args.capacity}")
        ids, lengths = read_lengths(args.lengths)
    except InputError as exc:
        print(f"giraffe pack: {args.lengths}: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    result = pack(lengths, args.capacity)
    seconds = time.perf_counter() - started
    summary = {
        "bins": result.n_bins,
        "fill": round(result.fill, 6),
        "rejected": result.n_rejected,
        "seconds": round(seconds, 4),
        "samples": int(lengths.size),
        "tokens": result.tokens,
        "lower_bound": result.lower_bound,
        "capacity": args.capacity,
    }
    if args.out:
        fits = result.bin_of >= 0
        table = pa.table(
            {
                "sample_id": ids,
                "n_tokens": pa.array(lengths),
                "bin": pa.array(result.bin_of, mask=~fits),
                "offset": pa.array(result.offset, mask=~fits),
                "reason": pa.array(np.where(fits, None, "longer_than_capacity").tolist(), pa.string()),
            }
        )
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_parquet(table, args.out)
        summary["out"] = str(args.out)
    print(json.dumps(summary))
    return 0


def add_pack_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "pack",
        help="best-fit pack a parquet of sample_id, n_tokens into sequences",
        description="Pack sample lengths alone with the pipeline's best-fit decreasing and print one JSON line "
        "(bins, fill, rejected, seconds, ...). With --out, one row per input sample in input order: sample_id, "
        "n_tokens, bin, offset (null for a sample longer than the capacity, reason longer_than_capacity). Bad "
        "input is one line on stderr and exit status 2.",
        epilog="examples:\n"
        "  giraffe pack data/token_counts/token_counts.parquet --capacity 32768\n"
        "  giraffe pack lengths.parquet --capacity 8192 --out packed.parquet",
    )
    p.add_argument("lengths", help="parquet file with columns sample_id, n_tokens")
    p.add_argument("--capacity", type=positive_int, required=True, help="sequence length in tokens")
    p.add_argument("--out", help="write one row per sample with its bin and offset here")
    p.set_defaults(func=cmd_pack)
    return p
