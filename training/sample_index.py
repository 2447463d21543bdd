"""Rows of the stage tables by key without loading the tables: memory-mapped Arrow plus a hash index.

Why: at full ETVLM size the packed sequences, the conversation tables and a dict of every
sample id are about 10 GB of Python objects, held again in every training process. Instead
each Parquet file a rank reads is converted once (streamed, one record batch at a time) into
an Arrow IPC file, and its key column into two sorted ``.npy`` arrays (a 64-bit hash of each
key and its row number). A rank opens them memory-mapped: the pages are the operating
system's page cache, shared by every rank on a host, and only the rows a rank asks for are
ever read and turned into Python objects. A lookup is a binary search in the hash array
(collisions are resolved by comparing the key itself) and a zero-copy slice of one batch.

The index lives in ``<data_root>/collator_index/`` (generated, like every stage folder; a
temporary folder when the data root is read-only). An index file is named after the source
file's path, size and modification time, so a rewritten table gets a new index, and it is
trusted only after it verifies (it opens, and its row counts equal the source's footer). Every
file is written through a temporary sibling and renamed, so ranks building the same index at
once never see a half-written one.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import ipc

from assets.contract.atomic import atomic_path
from assets.contract.parquet_stream import open_parquet

INDEX_DIR = "collator_index"
BATCH_ROWS = 1024
"""Rows per record batch of the Arrow copy: one lookup touches one batch's pages."""


def key_hash(key: str) -> int:
    """A stable 64-bit hash of a key (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") >> 1


def index_dir(data_root: str | Path) -> Path:
    """``<data_root>/collator_index``, or a temporary folder when the data root is read-only."""
    wanted = Path(data_root) / INDEX_DIR
    try:
        wanted.mkdir(parents=True, exist_ok=True)
        if os.access(wanted, os.W_OK):
            return wanted
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / f"giraffe-{INDEX_DIR}"
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def _stamp(path: Path) -> str:
    st = path.stat()
    ident = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


class MappedTable:
    """One Parquet file as memory-mapped Arrow record batches, optionally indexed by ``key``.

    ``row(i)`` is row ``i`` as a dict; ``lookup(value)`` every row whose ``key`` column equals
    ``value``. ``columns`` limits the copy to the columns the reader needs."""

    def __init__(self, source: str | Path, cache_dir: str | Path, key: str | None = None,
                 columns: Sequence[str] | None = None) -> None:
        self.source = Path(source)
        self.key = key
        self.columns = list(columns) if columns is not None else None
        stem = f"{self.source.parent.name}-{self.source.stem}-{_stamp(self.source)}"
        if self.columns is not None:
            stem += "-" + hashlib.sha256(",".join(self.columns).encode()).hexdigest()[:8]
        base = Path(cache_dir) / stem
        self.arrow_path = base.with_suffix(".arrow")
        self.keys_path = Path(f"{base}.{key}.keys.npy") if key else None
        self.rows_path = Path(f"{base}.{key}.rows.npy") if key else None
        expected = pq.ParquetFile(self.source).metadata.num_rows
        if not self._open(expected):
            self._build()
            if not self._open(expected):
                raise RuntimeError(f"index of {self.source} does not verify after building it")

    # -- building and opening ------------------------------------------------------------

    def _build(self) -> None:
        """Stream the Parquet file into the Arrow copy and the key hashes (one batch at a time)."""
        parquet = open_parquet(self.source)
        schema = parquet.schema_arrow
        if self.columns is not None:
            schema = pa.schema([schema.field(c) for c in self.columns])
        hashes: list[np.ndarray] = []
        with atomic_path(self.arrow_path) as tmp:  # renamed last: an Arrow copy in place means a complete index
            with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, schema) as writer:
                for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=self.columns):
                    writer.write_batch(batch)
                    if self.key:
                        keys = batch.column(self.key).to_pylist()
                        hashes.append(np.fromiter((key_hash(str(k)) for k in keys), np.int64, len(keys)))
            if self.key:
                h = np.concatenate(hashes) if hashes else np.zeros(0, np.int64)
                order = np.argsort(h, kind="stable")
                for path, array in ((self.rows_path, order.astype(np.int64)), (self.keys_path, h[order])):
                    with atomic_path(path) as part, open(part, "wb") as f:
                        np.save(f, array)

    def _open(self, expected_rows: int) -> bool:
        if not self.arrow_path.is_file() or (self.key and not (self.keys_path.is_file() and self.rows_path.is_file())):
            return False
        try:
            reader = ipc.open_file(pa.memory_map(str(self.arrow_path), "r"))
            sizes = [reader.get_batch(i).num_rows for i in range(reader.num_record_batches)]
            if sum(sizes) != expected_rows:
                return False
            if self.key:
                keys = np.load(self.keys_path, mmap_mode="r")
                rows = np.load(self.rows_path, mmap_mode="r")
                if len(keys) != expected_rows or len(rows) != expected_rows:
                    return False
                self._keys, self._rows = keys, rows
        except (OSError, ValueError, pa.ArrowException):
            return False
        self._reader = reader
        self._starts = np.cumsum([0, *sizes]).astype(np.int64)
        return True

    # -- reading ------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def schema(self) -> pa.Schema:
        return self._reader.schema

    def row(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self):
            raise IndexError(f"row {i} of {len(self)} in {self.source}")
        b = int(np.searchsorted(self._starts, i, side="right")) - 1
        return self._reader.get_batch(b).slice(i - int(self._starts[b]), 1).to_pylist()[0]

    def lookup(self, value: str) -> list[dict[str, Any]]:
        """Every row whose key equals ``value``, in file order."""
        if not self.key:
            raise TypeError(f"{self.source}: opened without a key column")
        h = key_hash(str(value))
        lo, hi = np.searchsorted(self._keys, h, side="left"), np.searchsorted(self._keys, h, side="right")
        found = [self.row(int(r)) for r in sorted(self._rows[lo:hi])]
        return [r for r in found if r[self.key] == value]


def parquet_files(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """The Parquet files named by ``paths`` (a folder stands for its ``*.parquet``, sorted), in
    order; a missing path is an error here rather than an empty read later."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(p.glob("*.parquet"))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"packed shard not found: {p}")
    return files


class MappedRows(Sequence):
    """Rows of several Parquet files (folders: their ``*.parquet``), in file then row order,
    each file a :class:`MappedTable`: ``rows[i]`` reads one row, nothing is held."""

    def __init__(self, paths: str | Path | Iterable[str | Path], cache_dir: str | Path,
                 columns: Sequence[str] | None = None) -> None:
        self.tables = [MappedTable(f, cache_dir, columns=columns) for f in parquet_files(paths)]
        self._starts = np.cumsum([0, *(len(t) for t in self.tables)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"row {i} of {len(self)}")
        f = int(np.searchsorted(self._starts, i, side="right")) - 1
        return self.tables[f].row(i - int(self._starts[f]))
