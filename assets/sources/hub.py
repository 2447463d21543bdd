"""Fetching a source: rows through ``datasets.load_dataset``, media through ``huggingface_hub``.

The hub and the embedded default share every line here except the location: a hub repo id,
or the local folder where the embedded sample lies in the same layout. Archives are unpacked
by the same code in both cases, so the path a user runs against the hub is the path tested.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import json
import tarfile
import tempfile
import zipfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from assets.contract.atomic import atomic_path, write_json, write_parquet
from assets.contract.conversation import REJECTED_SCHEMA, Rejection, make_sample_id
from assets.sources.embedded.samples import SAMPLE_VERSION
from assets.sources.owned import UNPACKED_SUFFIX, generate_once, owned_subdir
from assets.sources.records import (
    BATCH_ROWS,
    JSON_SUFFIXES,
    Undecodable,
    iter_file_records,
    normalize_table,
    records_table,
    unified_schema,
)

if TYPE_CHECKING:
    import datasets

    from assets.sources.registry import SourceSpec

Mode = Literal["embedded", "hub"]
SAMPLE_STAMP = ".giraffe-sample.json"


@dataclass(frozen=True)
class HubSettings:
    """How sources are fetched. ``max_rows`` streams only the first rows of a huge source."""

    mode: Mode = "embedded"
    token: str | None = None
    max_rows: int | None = None
    revision: str | None = None
    seed: int = 0
    hub_ids: tuple[tuple[str, str], ...] = ()
    """(source or benchmark name, repo id) pairs that replace the registry's repo in hub mode
    (a mirror, a renamed or transferred repo)."""

    def hub_id_for(self, name: str, default: str) -> str:
        return dict(self.hub_ids).get(name, default) if self.mode == "hub" else default


def with_hub_id(spec, settings: HubSettings):
    """``spec`` with the repo the settings name for it (hub mode only; a dataclass copy)."""
    import dataclasses

    hub_id = settings.hub_id_for(spec.name, spec.hub_id)
    return spec if hub_id == spec.hub_id else dataclasses.replace(spec, hub_id=hub_id)


def parse_hub_ids(text: str | None) -> tuple[tuple[str, str], ...]:
    """``name=org/repo,name2=org2/repo2`` -> pairs; raises ValueError naming a bad item."""
    pairs = []
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, repo = item.partition("=")
        if not sep or repo.strip().count("/") != 1 or not name.strip():
            raise ValueError(f"GIRAFFE_HUB_IDS item {item.strip()!r} is not name=org/repo")
        pairs.append((name.strip(), repo.strip()))
    return tuple(pairs)


@dataclass(frozen=True)
class FetchedSource:
    name: str
    mode: Mode
    location: str
    rows: int
    data_path: Path
    media_roots: tuple[Path, ...]
    content_hash: str
    columns: tuple[str, ...]
    undecodable: int = 0
    fallback: str | None = None  # why datasets could not read the files (the fallback reader ran)

    def manifest(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mode": self.mode,
            "location": self.location,
            "rows": self.rows,
            "data_path": str(self.data_path),
            "media_roots": [str(p) for p in self.media_roots],
            "content_hash": self.content_hash,
            "columns": list(self.columns),
            "undecodable": self.undecodable,
            "fallback": self.fallback,
        }


def source_location(spec: SourceSpec, settings: HubSettings, embedded_root: Path) -> str:
    """Where the rows are read from: the declared local folder, the hub repo, or the embedded
    sample (generated on first use)."""
    if spec.files_root is not None:
        return spec.files_root
    if settings.mode == "hub" or spec.sample is None:
        return spec.hub_id
    return str(ensure_embedded_sample(spec, embedded_root, settings.seed))


def ensure_embedded_sample(spec: SourceSpec, embedded_root: Path, seed: int = 0) -> Path:
    """Generate the source's local sample once (atomically) and return its folder."""
    stamp = {"source": spec.name, "version": SAMPLE_VERSION, "seed": seed}
    target = owned_subdir(embedded_root, spec.hub_id)
    return generate_once(target, stamp, lambda folder: spec.sample(folder, seed), SAMPLE_STAMP)


def load_rows(spec: SourceSpec, location: str, settings: HubSettings, cache_dir: Path | None = None) -> datasets.Dataset:
    """Load the source's rows with ``datasets`` from a hub repo id or a local folder."""
    import datasets

    kwargs: dict[str, Any] = {
        "data_files": list(spec.data_files) or None,
        "split": spec.split,
        "token": settings.token,
        "revision": settings.revision,
    }
    if spec.files_root is not None:  # declared local files: a builder by file type, absolute paths
        location = builder_for(spec.data_files)
        kwargs["data_files"] = [str(p) for p in local_data_files(spec, spec.files_root)]
        kwargs.pop("revision")
    local = spec.files_root is not None or (settings.mode != "hub" and spec.sample is not None)
    if local or is_json_array_source(spec):
        files = local_data_files(spec, spec.files_root or location) if local else hub_data_files(spec, settings, cache_dir)
        lines = json_lines_copies(files, (cache_dir or Path(tempfile.gettempdir()) / "giraffe") / "jsonl")
        if lines != files and all(f.suffix.lower() in JSON_SUFFIXES for f in files):  # a JSON array, read whole by ``datasets``: read its one-line-per-record copy
            location = "json"
            kwargs["data_files"] = [str(f) for f in lines]
            kwargs.pop("revision", None)
    files = kwargs.get("data_files") or []
    if location == "parquet" or (files and all(str(f).lower().endswith(".parquet") for f in files)):
        # The parquet builder's scanner pre-buffers by default, which keeps every column chunk
        # of a file it has read until the file ends: the whole file resident (assets/contract/parquet_stream.py).
        import pyarrow.dataset as pads

        kwargs["fragment_scan_options"] = pads.ParquetFragmentScanOptions(pre_buffer=False)
    if settings.max_rows:
        stream = datasets.load_dataset(location, streaming=True, **kwargs)
        rows = list(stream.take(settings.max_rows))
        return datasets.Dataset.from_list(rows, features=stream.features)
    return datasets.load_dataset(location, cache_dir=str(cache_dir) if cache_dir else None, **kwargs)


def is_json_array_source(spec: SourceSpec) -> bool:
    """Whether the source's files are ``.json`` (one JSON array each, as LLaVA publishes)."""
    return bool(spec.data_files) and all(str(f).lower().endswith(".json") for f in spec.data_files)


# Mapped source bytes copied before their pages are dropped from the process (see below).
DROP_MAPPED_BYTES = 64 << 20


def json_lines_copies(files: list[Path], work_dir: Path) -> list[Path]:
    """``files`` with every JSON array of objects replaced by a JSON Lines copy, made once in a
    streaming pass (``datasets`` parses a JSON array whole, about 8x its size in memory, but
    JSON Lines in blocks). Each element is copied as its bytes with its line breaks turned
    into spaces: a line break inside an element can only be whitespace between tokens (a JSON
    string cannot hold one), so every valid element stays the same value. A copy is named by
    the original's path, size and mtime and reused while those hold; a file that is not an
    array of objects is kept as it is, and bad elements make ``datasets`` fail the copy, so
    the record-by-record reader then reads the original."""
    import mmap

    from assets.sources.records import array_spans, json_array_start

    out = []
    for f in files:
        start = json_array_start(f)
        if start is None:
            out.append(f)
            continue
        st = f.stat()
        key = hashlib.sha256(f"{f.resolve()}\x00{st.st_size}\x00{st.st_mtime_ns}".encode()).hexdigest()[:16]
        target = work_dir / f"{f.stem}-{key}.jsonl"
        if not target.is_file():
            with atomic_path(target) as tmp, f.open("rb") as src, tmp.open("wb") as dst, \
                    mmap.mmap(src.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                dropped = 0
                for lo, hi, _ in array_spans(buf, start):
                    dst.write(bytes(buf[lo:hi]).replace(b"\r", b" ").replace(b"\n", b" ").strip())
                    dst.write(b"\n")
                    if lo - dropped >= DROP_MAPPED_BYTES and hasattr(mmap, "MADV_DONTNEED"):
                        # the copied part's pages leave this process's RSS (a read-only map of the
                        # file: they are read again from it if ever touched)
                        upto = lo // mmap.PAGESIZE * mmap.PAGESIZE
                        buf.madvise(mmap.MADV_DONTNEED, dropped, upto - dropped)
                        dropped = upto
        out.append(target)
    return out


def builder_for(files: tuple[str, ...] | list[str]) -> str:
    """The ``datasets`` packaged builder for local files (json, parquet, csv)."""
    suffixes = {Path(str(f)).suffix.lower() for f in files}
    if suffixes <= {".json", ".jsonl", ".ndjson"}:
        return "json"
    if suffixes <= {".parquet"}:
        return "parquet"
    if suffixes <= {".csv"}:
        return "csv"
    raise SourceReadError(f"data files of one source must share one type (json/jsonl, parquet or csv), got {sorted(suffixes)}")


class SourceReadError(RuntimeError):
    """A source's files cannot be read (a permanent error: retrying cannot help)."""


def local_data_files(spec: SourceSpec, location: str) -> list[Path]:
    """The files behind ``spec.data_files`` under a local folder (globs expanded, sorted)."""
    base = Path(location)
    found: list[Path] = []
    for pattern in spec.data_files:
        p = Path(pattern)
        if p.is_absolute():
            matches = sorted(Path(m) for m in glob.glob(str(p), recursive=True))
        else:
            matches = sorted(base.glob(pattern))
        found += [m for m in matches if m.is_file() and m not in found]
    if not found:
        raise SourceReadError(f"{spec.name}: no file matches {list(spec.data_files)} under {base}")
    return found


def hub_data_files(spec: SourceSpec, settings: HubSettings, cache_dir: Path | None) -> list[Path]:
    """Download the repo files behind ``spec.data_files`` one by one (the fallback reader's input)."""
    from huggingface_hub import hf_hub_download

    listing = repo_files(spec.hub_id, settings)
    patterns = spec.data_files or ("*.json", "*.jsonl")
    names = [f for f in listing if any(fnmatch.fnmatch(f, p) for p in patterns)]
    if not names:
        raise SourceReadError(f"{spec.name}: no file of {spec.hub_id} matches {list(spec.data_files)}")
    return [
        Path(hf_hub_download(spec.hub_id, n, repo_type="dataset", revision=settings.revision, token=settings.token,
                             cache_dir=str(cache_dir) if cache_dir else None))
        for n in names
    ]


def repo_files(repo_id: str, settings: HubSettings) -> list[str]:
    from huggingface_hub import list_repo_files

    return list(list_repo_files(repo_id, repo_type="dataset", revision=settings.revision, token=settings.token))


def folder_files(folder: Path) -> list[str]:
    """A local folder's files as a repo listing (relative POSIX paths)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def check_media_patterns(spec: SourceSpec, patterns: tuple[str, ...], listing: list[str], where: str) -> None:
    """Fail when a media pattern matches no file of the repo, listing what the repo holds:
    otherwise every row would be quarantined as ``missing_media`` with green checks."""
    unmatched = [p for p in patterns if not any(fnmatch.fnmatch(f, p) for f in listing)]
    if not unmatched:
        return
    shown = "\n  ".join(listing[:200]) + (f"\n  ... and {len(listing) - 200} more" if len(listing) > 200 else "")
    raise SourceReadError(
        f"{spec.name}: media pattern(s) {unmatched} match no file of {where}; fix MediaSpec.patterns "
        f"in the registry. The repo holds {len(listing)} file(s):\n  {shown or '(none)'}"
    )


def unpack_archives(base: Path, patterns: tuple[str, ...]) -> list[Path]:
    """Unpack every archive matching ``patterns`` in place, once; refuses members that would
    land outside ``base`` (zip-slip). The marker left beside each archive lists its members,
    so the folder's owner knows every file in it (``assets.sources.owned``)."""
    unpacked = []
    for pattern in patterns:
        for archive in sorted(base.glob(pattern)):
            marker = archive.with_name(f".{archive.name}{UNPACKED_SUFFIX}")
            if marker.exists():
                continue
            dest = archive.parent.resolve()
            if archive.suffix == ".zip":
                with zipfile.ZipFile(archive) as zf:
                    members = zf.namelist()
                    for member in members:
                        if not (dest / member).resolve().is_relative_to(dest):
                            raise ValueError(f"{archive.name}: member {member!r} escapes the folder")
                    zf.extractall(dest)
                    files = [m for m in members if not m.endswith("/")]
            else:
                with tarfile.open(archive) as tf:
                    tf.extractall(dest, filter="data")
                    files = [m.name for m in tf.getmembers() if m.isfile()]
            write_json(marker, files)
            unpacked.append(archive)
    return unpacked


def download_media(repo_id: str, patterns, media_dir: Path, settings: HubSettings) -> None:
    """Snapshot the files matching ``patterns`` of a hub dataset repo into ``media_dir`` (sources
    and benchmarks alike; nothing to do without patterns)."""
    if not patterns:
        return
    from huggingface_hub import snapshot_download

    snapshot_download(
        repo_id=repo_id,
        repo_type="dataset",
        allow_patterns=list(patterns),
        local_dir=str(media_dir),
        token=settings.token,
        revision=settings.revision,
    )


def fetch_media(spec: SourceSpec, location: str, settings: HubSettings, media_dir: Path) -> tuple[Path, ...]:
    """Download (hub) or locate (embedded, declared) the source's media; return the roots paths
    resolve in. A declared folder is a read-only input: nothing is unpacked or written there."""
    media = spec.media
    if media.kind in ("none", "inline"):
        return ()
    if spec.origin == "declared" and spec.files_root is not None:
        return tuple(Path(root) for root in media.roots)
    if settings.mode == "hub" or spec.sample is None:
        base = media_dir
        repo = media.repo_id or spec.hub_id
        if media.patterns:
            check_media_patterns(spec, media.patterns, repo_files(repo, settings), f"hub repo {repo}")
        download_media(repo, media.patterns, media_dir, settings)
    else:
        base = Path(location)
        check_media_patterns(spec, media.patterns, folder_files(base), f"the embedded sample {base}")
    unpack_archives(base, media.archives)
    return tuple(base / root for root in media.roots)


def file_sha256(*paths: Path) -> str:
    h = hashlib.sha256()
    for path in paths:
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def is_parse_failure(exc: BaseException) -> bool:
    """A failure of ``datasets`` to read the files (not of the network, disk or permissions):
    the record-by-record reader may still get the good records out."""
    from assets.sources.errors import is_transient

    if is_transient(exc):
        return False
    e: BaseException | None = exc
    while e is not None:
        if isinstance(e, PermissionError) or (isinstance(e, OSError) and not isinstance(e, UnicodeError)
                                              and e.errno is not None):
            return False
        e = e.__cause__ or e.__context__
    return True


def write_undecodable(spec: SourceSpec, bad: list[Undecodable], path: Path) -> None:
    rows = [
        Rejection(
            make_sample_id(spec.name, {"file": Path(b.file).name, "offset": b.offset, "sha256": hashlib.sha256(b.raw).hexdigest()}),
            spec.name, "raw", "undecodable_record", b.detail, [], b.raw[:4000].decode("utf-8", "backslashreplace"),
        ).to_row()
        for b in bad
    ]
    write_parquet(pa.Table.from_pylist(rows, schema=REJECTED_SCHEMA), path)


def read_with_fallback(spec: SourceSpec, files: list[Path], data_path: Path, max_rows: int | None) -> tuple[int, list[str], list[Undecodable]]:
    """Write the decodable records of JSON/JSONL ``files`` to ``data_path`` (two streaming passes:
    the column types, then the rows) and return (rows, columns, undecodable records)."""
    not_json = [f.name for f in files if f.suffix.lower() not in JSON_SUFFIXES]
    if not_json:
        raise SourceReadError(f"{spec.name}: cannot read {not_json} record by record (only JSON and JSONL)")

    def batches(collect: list[Undecodable] | None):
        batch, n = [], 0
        for f in files:
            for rec in iter_file_records(f):
                if max_rows and n >= max_rows:
                    break
                n += 1
                if isinstance(rec, Undecodable):
                    if collect is not None:
                        collect.append(rec)
                    continue
                batch.append(rec)
                if len(batch) >= BATCH_ROWS:
                    yield batch
                    batch = []
        if batch:
            yield batch

    schema, json_cols = unified_schema(batches(None))
    bad: list[Undecodable] = []
    rows = 0
    with atomic_path(data_path) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            for batch in batches(bad):
                writer.write_table(records_table(batch, schema, json_cols))
                rows += len(batch)
    return rows, schema.names, bad


def write_batches(table: pa.Table, path: Path, batch_size: int = BATCH_ROWS) -> None:
    """``table`` as Parquet, one row group per ``batch_size`` rows (so the stages after read it
    batch by batch), atomically."""
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=batch_size):
            writer.write_batch(batch)


def cache_files_of(ds: datasets.Dataset) -> list[Path] | None:
    """The ``datasets`` cache files (Arrow IPC streams) that hold exactly ``ds``'s rows, in its
    order and with its columns; None where ``ds`` is something else (in memory, a slice, an
    index mapping). Counting a file's rows maps it but touches only its message headers."""
    if getattr(ds, "_indices", None) is not None or not ds.cache_files:
        return None
    files, rows = [Path(f["filename"]) for f in ds.cache_files], 0
    for f in files:
        with pa.memory_map(str(f)) as mm:
            reader = pa.ipc.open_stream(mm)
            if not reader.schema.equals(ds.data.schema, check_metadata=False):
                return None
            rows += sum(b.num_rows for b in reader)
    return files if rows == ds.num_rows else None


def write_cache_batches(files: list[Path], schema: pa.Schema, path: Path, batch_size: int = BATCH_ROWS) -> int:
    """``write_batches`` of the table held in the ``datasets`` cache ``files``, read batch by
    batch with plain reads: the memory-mapped table would leave every page of the cache (M3IT's
    images included) in this process's resident memory. Same row groups, same bytes. Returns
    the rows written."""
    rows, writer = 0, None
    with ExitStack() as stack:
        tmp = stack.enter_context(atomic_path(path))
        for f in files:
            reader = pa.ipc.open_stream(stack.enter_context(pa.OSFile(str(f))))
            for batch in reader:
                table = normalize_table(pa.Table.from_batches([batch]).replace_schema_metadata(schema.metadata))
                if writer is None:
                    writer = stack.enter_context(pq.ParquetWriter(tmp, table.schema))
                for part in table.to_batches(max_chunksize=batch_size):
                    writer.write_batch(part)
                rows += batch.num_rows
        if writer is None:
            empty = normalize_table(schema.empty_table())
            stack.enter_context(pq.ParquetWriter(tmp, empty.schema))
    return rows


def fetch_source(spec: SourceSpec, settings: HubSettings, out_dir: Path, embedded_root: Path,
                 batch_size: int = BATCH_ROWS) -> FetchedSource:
    """Fetch one source into ``out_dir``: ``data.parquet`` in the published schema (columns of
    mixed type as JSON text, see ``assets.sources.records``), ``undecodable.parquet`` with the
    records no reader could decode, media next to it (hub) or referenced in place (embedded,
    declared), and ``manifest.json`` for the next stage."""
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = with_hub_id(spec, settings)
    location = source_location(spec, settings, embedded_root)
    cache_dir = out_dir.parent.parent / ".hf-cache"
    data_path, bad_path = out_dir / "data.parquet", out_dir / "undecodable.parquet"
    fallback = None
    try:
        ds = load_rows(spec, location, settings, cache_dir=cache_dir)
        files = cache_files_of(ds)
        if files is not None:
            rows = write_cache_batches(files, ds.data.schema, data_path, batch_size)
        else:
            table = normalize_table(ds.data.table)
            write_batches(table, data_path, batch_size)
            rows = table.num_rows
        columns, bad = ds.column_names, []
    except Exception as exc:  # noqa: BLE001 - classified just below
        if not is_parse_failure(exc):
            raise
        fallback = f"{type(exc).__name__}: {exc}"[:500]
        if spec.files_root is not None or (settings.mode != "hub" and spec.sample is not None):
            files = local_data_files(spec, location)
        else:
            files = hub_data_files(spec, settings, cache_dir)
        rows, columns, bad = read_with_fallback(spec, files, data_path, settings.max_rows)
    write_undecodable(spec, bad, bad_path)
    roots = fetch_media(spec, location, settings, out_dir / "media")
    fetched = FetchedSource(
        name=spec.name,
        mode=settings.mode,
        location=location,
        rows=rows,
        data_path=data_path,
        media_roots=roots,
        content_hash=file_sha256(data_path, bad_path),
        columns=tuple(columns),
        undecodable=len(bad),
        fallback=fallback,
    )
    write_json(out_dir / "manifest.json", fetched.manifest(), indent=1)
    return fetched


def read_manifest(raw_dir: Path) -> dict[str, Any]:
    path = raw_dir / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: materialise the raw asset first")
    return json.loads(path.read_text())
