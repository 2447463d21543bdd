"""Atomic file output: a reader sees the old file or the new one, never half of one.

Every stage writes into a temporary sibling (unique per process and thread, so two writers of
the same file never share a temporary) and renames it over the target once the write has
finished; a crash or a kill mid-write leaves at most a ``.tmp`` file that no reader opens.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TMP_MARK = ".giraffe-tmp"


def temp_sibling(path: Path) -> Path:
    """A temporary name next to ``path`` that no other process or thread uses."""
    return path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}{TMP_MARK}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` in one rename, on an
    exception it is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | Path, value: Any, **kwargs: Any) -> Path:
    return write_text(path, json.dumps(value, **kwargs))


def write_parquet(table, path: str | Path, **kwargs: Any) -> Path:
    """``pyarrow.parquet.write_table`` through a temporary sibling."""
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **kwargs)
    return Path(path)
