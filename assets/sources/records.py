"""Reading a source's records when ``datasets`` cannot, and storing columns whose type varies.

``datasets`` reads a JSON file as a whole: one record with raw Latin-1 bytes, a lone surrogate
escape or a truncated last line makes it fail the file, and every good record of the source
with it. This module is the fallback for such a file: it splits the file into records itself
(lines of a JSONL file, top-level elements of a JSON array), decodes each on its own, and
reports every record it cannot decode with its file, line and byte offset, so that only that
record is quarantined (``undecodable_record``).

Published dumps also mix types within a column (LLaVA's ``image`` is a path in most rows and a
list of paths in others). One Parquet column has one type, so such a column is stored as JSON
text and named in the table's ``giraffe_json_columns`` metadata; ``read_rows`` gives every
record its own value back. ``datasets`` does the same with its ``Json`` type (Arrow's
``arrow.json`` extension), which ``read_rows`` decodes too: without it every path would arrive
JSON-quoted and be quarantined as missing.
"""

from __future__ import annotations

import json
import mmap
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

JSON_COLUMNS_KEY = b"giraffe_json_columns"
JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
BATCH_ROWS = 2048


@dataclass(frozen=True)
class Undecodable:
    """A record that could not be decoded: where it is and why."""

    file: str
    line: int
    offset: int
    error: str
    raw: bytes

    @property
    def detail(self) -> str:
        return f"{Path(self.file).name} line {self.line}, byte {self.offset}: {self.error}"


def _lone_surrogate(value: Any, where: str = "") -> str | None:
    """Where a string holding a lone surrogate sits in ``value`` (None when there is none):
    Python's JSON decoder accepts ``\\ud800`` escapes that no UTF-8 writer can store."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"lone surrogate {value[exc.start]!r} in {where or 'the record'}"
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            found = _lone_surrogate(k, where) or _lone_surrogate(v, f"{where}.{k}" if where else str(k))
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if found := _lone_surrogate(v, f"{where}[{i}]"):
                return found
    return None


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def decode_record(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """(record, None) or (None, why it cannot be a record)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"invalid UTF-8 byte 0x{raw[exc.start]:02x} at record byte {exc.start}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON ({exc.msg} at column {exc.colno})"
    except RecursionError:
        return None, "invalid JSON (nested too deeply)"
    if not isinstance(value, dict):
        return None, f"record is a JSON {type(value).__name__}, expected an object"
    # valid UTF-8 cannot hold a surrogate: only a \uD800-\uDFFF escape can make one
    if _SURROGATE_ESCAPE.search(raw) and (surrogate := _lone_surrogate(value)):
        return None, surrogate
    return value, None


def _jsonl_spans(buf) -> Iterator[tuple[int, int, int]]:
    """(start, end, line number) of every non-blank line."""
    start, line, size = 0, 1, len(buf)
    while start < size:
        end = buf.find(b"\n", start)
        end = size if end < 0 else end
        if buf[start:end].strip():
            yield start, end, line
        start, line = end + 1, line + 1


_ARRAY_TOKENS = re.compile(rb'["\\\[\]{},\n]')
_QUOTE, _BACKSLASH, _NEWLINE, _COMMA = ord('"'), ord("\\"), ord("\n"), ord(",")
_OPEN, _CLOSE = (ord("["), ord("{")), (ord("]"), ord("}"))


def _array_spans(buf, first: int) -> Iterator[tuple[int, int, int]]:
    """(start, end, line number) of every top-level element of the JSON array opening at
    ``first``. The scan follows strings and nesting only, so an element with bad bytes or bad
    syntax still ends where the next one begins; a raw newline ends a string (a JSON string
    cannot hold one), which resynchronises after an unterminated string. A truncated file
    yields its unfinished last element as it is."""
    depth, in_string, skip = 0, False, -1
    line = 1 + bytes(buf[:first]).count(b"\n")
    boundary, boundary_line = first + 1, line

    def element(lo: int, hi: int):
        raw = bytes(buf[lo:hi])
        body = raw.lstrip()
        if not body.strip():
            return None
        lead = len(raw) - len(body)
        return lo + lead, hi, boundary_line + raw[:lead].count(b"\n")

    for m in _ARRAY_TOKENS.finditer(buf, first + 1):
        pos = m.start()
        if pos < skip:
            continue
        ch = buf[pos]
        if ch == _NEWLINE:
            line += 1
            in_string = False
        elif in_string:
            if ch == _BACKSLASH and buf[pos + 1 : pos + 2] != b"\n":
                skip = pos + 2
            elif ch == _QUOTE:
                in_string = False
        elif ch == _QUOTE:
            in_string = True
        elif ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            if depth > 0:
                depth -= 1
            elif ch == _CLOSE[0]:
                if span := element(boundary, pos):
                    yield span
                return
        elif ch == _COMMA and depth == 0:
            if span := element(boundary, pos):
                yield span
            boundary, boundary_line = pos + 1, line
    if span := element(boundary, len(buf)):
        yield span


def iter_file_records(path: str | Path) -> Iterator[dict[str, Any] | Undecodable]:
    """Every record of a JSON or JSONL file, decoded one by one; bad ones as ``Undecodable``."""
    path = Path(path)
    with path.open("rb") as f:
        if path.stat().st_size == 0:
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            head = 3 if buf[:3] == b"\xef\xbb\xbf" else 0
            while head < len(buf) and buf[head : head + 1] in (b" ", b"\t", b"\r", b"\n"):
                head += 1
            spans = _array_spans(buf, head) if buf[head : head + 1] == b"[" else _jsonl_spans(buf)
            for start, end, line in spans:
                raw = bytes(buf[start:end]).strip()
                record, error = decode_record(raw)
                if record is None:
                    yield Undecodable(str(path), line, start, error or "", raw)
                else:
                    yield record


# --------------------------------------------------------------------- tables of records


def _is_json_type(t: pa.DataType) -> bool:
    return getattr(t, "extension_name", None) == "arrow.json"


def _infer(values: list[Any]) -> pa.DataType | None:
    """The Arrow type of one column batch, or None when its values have no common type."""
    try:
        return pa.array(values).type
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        return None


def unified_schema(batches: Iterable[list[dict[str, Any]]]) -> tuple[pa.Schema, list[str]]:
    """Schema over every batch of records, and the columns whose values share no type (those
    are stored as JSON text). Column order is first appearance."""
    types: dict[str, pa.DataType | None] = {}
    for batch in batches:
        names = list(dict.fromkeys(k for r in batch for k in r))
        for name in names:
            t = _infer([r.get(name) for r in batch])
            if name not in types:
                types[name] = t
                continue
            old = types[name]
            if old is None or t is None:
                types[name] = None
                continue
            try:
                types[name] = pa.unify_schemas(
                    [pa.schema([(name, old)]), pa.schema([(name, t)])], promote_options="permissive"
                ).field(name).type
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
                types[name] = None
    json_cols = [n for n, t in types.items() if t is None]
    fields = [pa.field(n, pa.string() if t is None else (pa.string() if pa.types.is_null(t) else t)) for n, t in types.items()]
    return pa.schema(fields, metadata={JSON_COLUMNS_KEY: json.dumps(json_cols).encode()}), json_cols


def records_table(records: list[dict[str, Any]], schema: pa.Schema, json_cols: list[str]) -> pa.Table:
    """One batch of records as a table of ``schema`` (JSON text in the JSON columns)."""
    cols = {}
    for f in schema:
        values = [r.get(f.name) for r in records]
        if f.name in json_cols:
            values = [None if v is None else json.dumps(v, ensure_ascii=False) for v in values]
        cols[f.name] = pa.array(values, type=f.type)
    return pa.Table.from_pydict(cols, schema=schema)


def normalize_table(table: pa.Table) -> pa.Table:
    """``datasets`` output with every ``arrow.json`` column stored as JSON text and named in
    ``giraffe_json_columns`` (Parquet readers without the extension then see plain text)."""
    json_cols = [f.name for f in table.schema if _is_json_type(f.type)]
    if not json_cols:
        return table
    for name in json_cols:
        i = table.schema.get_field_index(name)
        column = table.column(i)
        storage = pa.chunked_array([c.storage for c in column.chunks], type=pa.string())
        table = table.set_column(i, pa.field(name, pa.string()), storage)
    meta = dict(table.schema.metadata or {})
    if b"huggingface" in meta:  # the features would decode the text once more
        hf = json.loads(meta[b"huggingface"])
        features = hf.get("info", {}).get("features", {})
        for name in json_cols:
            if name in features:
                features[name] = {"dtype": "string", "_type": "Value"}
        meta[b"huggingface"] = json.dumps(hf).encode()
    meta[JSON_COLUMNS_KEY] = json.dumps(json_cols).encode()
    return table.replace_schema_metadata(meta)


def json_columns(schema: pa.Schema) -> list[str]:
    named = json.loads((schema.metadata or {}).get(JSON_COLUMNS_KEY, b"[]"))
    return list(dict.fromkeys([*named, *(f.name for f in schema if _is_json_type(f.type))]))


def decode_json_columns(rows: list[dict[str, Any]], cols: list[str]) -> list[dict[str, Any]]:
    """Give every record its own value back in the JSON-text columns."""
    if not cols:
        return rows
    for row in rows:
        for c in cols:
            v = row.get(c)
            if isinstance(v, str):
                row[c] = json.loads(v)
    return rows


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a raw ``data.parquet``, each with its own types (see ``normalize_table``)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return decode_json_columns(table.to_pylist(), json_columns(table.schema))
