"""Fetching a benchmark: the hub repository or its embedded sample, through the same loader.

As for the training sources (``assets.sources.hub``), hub and embedded differ only in the location
handed to ``datasets.load_dataset`` (a repo id or the local folder laid out like the repo) and
in where media come from (``snapshot_download`` vs already in the folder); archives are unpacked
by the same code either way. The result is a normalised ``items.parquet`` (see
``eval.items``), ``rejected.parquet`` with a reason per quarantined row, and ``manifest.json``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from assets.contract.atomic import write_json, write_parquet
from assets.contract.conversation import REJECTED_SCHEMA, Rejection
from assets.sources.hub import HubSettings, download_media, unpack_archives, with_hub_id
from assets.sources.owned import generate_once, owned_subdir
from eval.benchmarks import Benchmark
from eval.formats import FetchOptions, LoadContext, limit_per_split
from eval.items import EvalItem, items_table

SAMPLE_VERSION = 2  # 2: MMBench index as int64, as on the hub
SAMPLE_STAMP = ".giraffe-benchmark-sample.json"


@dataclass
class FetchedBenchmark:
    name: str
    mode: str
    location: str
    rows_in: int
    items: list[EvalItem]
    rejected: list[Rejection]
    items_path: Path
    rejected_path: Path

    def reasons(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rejected:
            out[r.reason] = out.get(r.reason, 0) + 1
        return out

    def by_split(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in self.items:
            out[i.split] = out.get(i.split, 0) + 1
        return out


def ensure_sample(spec: Benchmark, embedded_root: Path, options: FetchOptions, seed: int = 0) -> Path:
    """Generate the benchmark's local sample once per (version, seed, options); atomic."""
    stamp = {"benchmark": spec.name, "version": SAMPLE_VERSION, "seed": seed, "options": options.generation_key()}
    return generate_once(owned_subdir(embedded_root, spec.hub_id), stamp, lambda folder: spec.generate(folder, options, seed), SAMPLE_STAMP)


def join_split_archives(base: Path, parts: tuple[tuple[str, str], ...]) -> list[Path]:
    """Concatenate ``name.part.aa, .ab, ...`` into ``name`` (what ``cat`` does), once."""
    joined = []
    for pattern, name in parts:
        pieces = sorted(base.glob(pattern))
        out = base / name
        if not pieces or out.exists():
            continue
        tmp = out.with_name(out.name + ".partial")
        with tmp.open("wb") as dst:
            for p in pieces:
                with p.open("rb") as src:
                    shutil.copyfileobj(src, dst, 1 << 20)
        tmp.rename(out)
        joined.append(out)
    return joined


def prepare_media(spec: Benchmark, settings: HubSettings, location: str, media_dir: Path) -> Path:
    """Download (hub) or locate (embedded) the benchmark's media and unpack its archives."""
    if settings.mode == "hub":
        base = media_dir
        download_media(spec.hub_id, spec.media_patterns, media_dir, settings)
    else:
        base = Path(location)
    join_split_archives(base, spec.split_archives)
    unpack_archives(base, spec.archives)
    return base


def fetch_benchmark(
    spec: Benchmark,
    settings: HubSettings,
    out_dir: Path,
    embedded_root: Path,
    options: FetchOptions = FetchOptions(),
) -> FetchedBenchmark:
    """Load one benchmark into ``out_dir`` (items, rejected, manifest)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = with_hub_id(spec, settings)
    if settings.mode == "hub":
        location = spec.hub_id
    else:
        location = str(ensure_sample(spec, embedded_root, options, settings.seed))
    media_base = prepare_media(spec, settings, location, out_dir / "media")
    ctx = LoadContext(
        benchmark=spec.name,
        location=location,
        media_base=media_base,
        media_out=out_dir / "media" / "inline",
        options=options,
        settings=settings,
        cache_dir=out_dir.parent / ".hf-cache",
    )
    items = spec.load(ctx)
    items = limit_per_split(items, options.max_items_per_split, options.seed)
    items_path, rejected_path = out_dir / "items.parquet", out_dir / "rejected.parquet"
    write_parquet(items_table(items), items_path)
    write_parquet(pa.Table.from_pylist([r.to_row() for r in ctx.rejected], schema=REJECTED_SCHEMA), rejected_path)
    fetched = FetchedBenchmark(spec.name, settings.mode, location, ctx.rows_in, items, ctx.rejected, items_path, rejected_path)
    manifest: dict[str, Any] = {
        "benchmark": spec.name,
        "hub_id": spec.hub_id,
        "mode": settings.mode,
        "location": location,
        "rows_in": ctx.rows_in,
        "items": len(items),
        "rejected": fetched.reasons(),
        "by_split": fetched.by_split(),
        "options": options.__dict__ | {"haystack_sizes": list(options.haystack_sizes)},
    }
    write_json(out_dir / "manifest.json", manifest, indent=1)
    return fetched
