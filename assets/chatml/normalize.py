"""Raw source rows -> ChatML conversations plus a rejected table, with nothing lost.

The source's adapter maps its published schema; this module applies the checks every
conversation must pass whatever its source, so a new source inherits them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assets.contract.atomic import write_parquet
from assets.contract.cleaning import clean_text
from assets.contract.conversation import (
    ROLES,
    Conversation,
    NormalizeResult,
    Rejection,
    canonical_json,
    make_sample_id,
)
from assets.contract.media import ImageVerifier, MediaResolver, RejectRow
from assets.contract.progress import Progress, Sink
from assets.sources.hub import read_manifest
from assets.sources.records import read_rows

if TYPE_CHECKING:
    from assets.sources.registry import SourceSpec

STAGE = "chatml"


def iter_records(spec: SourceSpec, rows: list[dict[str, Any]]) -> Iterator[tuple[list[int], dict[str, Any]]]:
    """Yield (source row indices, record); grouped sources merge several rows into one record."""
    if spec.group_key is None:
        for i, row in enumerate(rows):
            yield [i], row
        return
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        try:
            key = spec.group_key(row)
        except Exception:  # a row too broken to group stands alone and fails in the adapter
            key = f"__row{i}"
        groups.setdefault(key, []).append(i)
    for _, indices in sorted(groups.items(), key=lambda kv: kv[1][0]):
        for start in range(0, len(indices), spec.group_size):
            chunk = indices[start : start + spec.group_size]
            yield chunk, {"rows": [rows[i] for i in chunk]}


def merge_adjacent_text(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One text part for each run of text parts: the template renders them back to back, so
    two parts cleaned apart (``<|im_`` and ``end|>``) would meet as a token."""
    merged: list[dict[str, Any]] = []
    for part in parts:
        if part["type"] == "text" and merged and merged[-1]["type"] == "text":
            merged[-1] = {**merged[-1], "text": (merged[-1]["text"] or "") + (part["text"] or "")}
        else:
            merged.append(part)
    return merged


def clean_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Clean every text part and drop text parts left empty; media parts are kept as they are."""
    cleaned = []
    for message in messages:
        parts = []
        for part in merge_adjacent_text(message["content"]):
            if part["type"] == "text":
                text = clean_text(part["text"] or "")
                if not text.strip():
                    continue
                part = {**part, "text": text}
            parts.append(part)
        cleaned.append({"role": message["role"], "content": parts})
    return cleaned


def validate_messages(messages: list[dict[str, Any]]) -> None:
    """Structural rules of a training conversation; raises ``RejectRow`` with the reason."""
    if not messages:
        raise RejectRow("empty_conversation", "no turns")
    for i, message in enumerate(messages):
        if message["role"] not in ROLES:
            raise RejectRow("invalid_role", f"turn {i} has role {message['role']!r}")
        if not message["content"]:
            raise RejectRow("empty_message", f"turn {i} ({message['role']}) is empty after cleaning")
    body = messages[1:] if messages[0]["role"] == "system" else messages
    if not body:
        raise RejectRow("empty_conversation", "only a system prompt")
    for i, message in enumerate(body):
        expected = "user" if i % 2 == 0 else "assistant"
        if message["role"] != expected:
            raise RejectRow(
                "invalid_turn_order",
                f"turn {i + len(messages) - len(body)} is {message['role']!r}, expected {expected!r}",
            )
    if body[-1]["role"] != "assistant":
        raise RejectRow("invalid_turn_order", "conversation ends without an assistant reply")
    for message in messages:
        if message["role"] == "assistant" and any(p["type"] != "text" for p in message["content"]):
            raise RejectRow("invalid_turn_order", "media inside an assistant turn")


def normalize_source(
    spec: SourceSpec,
    rows: Iterable[dict[str, Any]],
    media: MediaResolver,
    log: Sink | None = None,
) -> NormalizeResult:
    """Every raw row into a conversation or a rejection with its reason; ``log`` gets the
    progress lines of a long source (rows done, rate, ETA)."""
    rows = list(rows)
    result = NormalizeResult(rows_in=len(rows))
    seen: dict[str, list[int]] = {}
    progress = Progress(f"chatml/{spec.name}", len(rows), log, unit="rows")
    for source_rows, record in iter_records(spec, rows):
        progress.update(len(source_rows))
        sample_id = make_sample_id(spec.name, record)

        def reject(reason: str, detail: str) -> None:
            result.rejections.append(
                Rejection(sample_id, spec.name, STAGE, reason, detail, source_rows, canonical_json(record))
            )

        if sample_id in seen:
            reject("duplicate_row", f"same content as source row(s) {seen[sample_id]}")
            continue
        seen[sample_id] = source_rows
        if not isinstance(record, dict):
            reject("malformed_row", f"record is {type(record).__name__}, expected object")
            continue
        try:
            messages = clean_messages(spec.adapter(record, media))
            validate_messages(messages)
        except RejectRow as exc:
            reject(exc.reason, exc.detail)
            continue
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            reject("malformed_row", f"{type(exc).__name__}: {exc}")
            continue
        result.conversations.append(Conversation(sample_id, spec.name, spec.category, messages, source_rows))
    progress.close()
    return result


def accounting(result: NormalizeResult) -> tuple[bool, str]:
    """Prove no sample was lost: every raw row is in exactly one conversation or rejection
    (records the raw stage could not decode are rejections without a row, counted apart)."""
    seen: dict[int, int] = {}
    for rows in [c.source_rows for c in result.conversations] + [r.source_rows for r in result.rejections]:
        for i in rows:
            seen[i] = seen.get(i, 0) + 1
    missing = sorted(set(range(result.rows_in)) - set(seen))
    doubled = sorted(i for i, n in seen.items() if n > 1)
    stray = sorted(i for i in seen if not 0 <= i < result.rows_in)
    ok = not (missing or doubled or stray)
    detail = (
        f"{result.rows_in} raw rows = {sum(len(c.source_rows) for c in result.conversations)} in "
        f"{len(result.conversations)} conversations + {sum(len(r.source_rows) for r in result.rejections)} "
        f"in {len(result.rejections)} rejections"
    )
    undecodable = sum(r.stage == "raw" for r in result.rejections)
    if undecodable:
        detail += f"; {undecodable} undecodable record(s) quarantined by the raw stage"
    if not ok:
        detail += f"; missing rows {missing[:10]}, rows counted twice {doubled[:10]}, unknown rows {stray[:10]}"
    return ok, detail


def records_in(result: NormalizeResult) -> int:
    """Records the source held: decoded rows plus the records the raw stage could not decode."""
    return result.rows_in + sum(r.stage == "raw" for r in result.rejections)


def write_chatml(
    spec: SourceSpec, raw_dir: Path, out_dir: Path, verdict_cache: Path | None = None, log: Sink | None = None
) -> NormalizeResult:
    """Normalise a fetched raw source into ``conversations.parquet`` and ``rejected.parquet``
    (which also holds the records the raw stage could not decode). ``verdict_cache`` keeps the
    images' full-decode verdicts for the next runs (``DataLayout.image_verdicts``)."""
    import pyarrow.parquet as pq

    manifest = read_manifest(raw_dir)
    rows = read_rows(manifest["data_path"])
    verifier = ImageVerifier(verdict_cache)
    media = MediaResolver([Path(p) for p in manifest["media_roots"]], out_dir / "media", verifier)
    result = normalize_source(spec, rows, media, log)
    bad_path = raw_dir / "undecodable.parquet"
    if bad_path.is_file():
        result.rejections += [Rejection(**r) for r in pq.read_table(bad_path).to_pylist()]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_parquet(result.conversation_table(), out_dir / "conversations.parquet")
    write_parquet(result.rejected_table(), out_dir / "rejected.parquet")
    return result
