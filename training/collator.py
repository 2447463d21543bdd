"""Packed sequences (docs/packed_shards.md) -> Qwen2-VL model inputs, one sequence per micro-batch.

For every sample of a sequence row the collator resolves the conversation
(``chatml/<source>/conversations.parquet``) and its media, and builds exactly the tokens that
``assets.tokens.count.TokenCounter`` counted: the ChatML rendering (``render_chatml``, checked
equal to the model's chat template elsewhere) tokenised once, each image pad grown to the
image's merged-token count and each video placeholder replaced by one
``<|vision_start|><|video_pad|>*k<|vision_end|>`` block per grid row. The length is checked
against the shard's ``lengths[i]``, so a processor that drifted from the one that counted
fails loudly instead of overflowing the stage length.

Labels follow the LLaMA-Factory / ms-swift convention: only assistant turns are learned, their
content and the closing ``<|im_end|>`` (not the ``<|im_start|>assistant\\n`` header, not the
newline after ``<|im_end|>``), and never a visual pad. A sample's first token is
``<|im_start|>`` (never labelled), so the shifted loss never asks one sample to predict the
next sample's first token.

Pixels: images through the processor's own image processor (the same resize rule
``TokenCounter`` used on the file's size; the grid is checked against the token count), videos
from the ``video_frames`` stage's shards (``load_frames``: PNG/WebP frames, or for the default
plan store the planned frames decoded from the source video and checked against their
digests, bit-identical to the PNG path), normalised and patchified with
``assets.video.inputs`` (pixel-equal to transformers, tested there).

Attention: ``training.packed_attention`` (which kwargs keep samples apart, per backend);
positions: ``training.positions.packed``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from assets.contract.chat_template import (
    DEFAULT_SYSTEM_PROMPT,
    IM_END,
    IM_START,
    IMAGE_PAD,
    IMAGE_PLACEHOLDER,
    VIDEO_PAD,
    VIDEO_PLACEHOLDER,
    VISION_END,
    VISION_START,
    render_chatml,
)
from assets.contract.layout import DataLayout
from assets.video.frames import FramesUnavailable, load_frames
from assets.video.inputs import video_pixel_values
from assets.video.pipe import host_cores
from training.packed_attention import (  # noqa: F401  (re-exported: the trainer imports them from here)
    PACKED_ATTENTION,
    block_diagonal_causal_mask,
    choose_attn_implementation,
    isolated_attention_kwargs,
    register_packed_attention,
)
from training.positions.packed import (
    MODES,
    PackedPositions,
    PositionRule,
    StockMRoPE,
    packed_position_ids,
)
from training.sample_index import MappedRows, MappedTable, index_dir, parquet_files

IGNORE_INDEX = -100
SEQUENCE_COLUMNS = ("seq_id", "mode", "sample_ids", "sources", "lengths")


class CollateError(Exception):
    """A packed sequence cannot be turned into model inputs; the message names the sample."""


class SampleNotFoundError(CollateError, LookupError):
    """A sample id is not in the conversation table its row points to."""


class MissingMediaError(CollateError, FileNotFoundError):
    """An image file or a video's frames file is missing or unreadable."""


# -- reading shards --------------------------------------------------------------------------


def load_packed_rows(paths: str | Path | Iterable[str | Path]) -> list[dict[str, Any]]:
    """Sequence rows of ``packed/<stage>/sequences.parquet`` or ``etvlm_mixture/<stage>/mixture.parquet``
    files (or folders of them), in file order then row order."""
    rows: list[dict[str, Any]] = []
    for f in parquet_files(paths):
        table = pq.read_table(f)
        missing = [c for c in SEQUENCE_COLUMNS if c not in table.column_names]
        if missing:
            raise CollateError(f"{f}: not a packed sequence shard, missing columns {missing}")
        rows += table.to_pylist()
    return rows


def open_packed_rows(paths: str | Path | Iterable[str | Path], data_root: str | Path) -> MappedRows:
    """``load_packed_rows`` without loading: the same rows in the same order, each read from a
    memory-mapped Arrow copy when indexed (``training.sample_index``), so a training rank
    holds no sequence it is not collating."""
    rows = MappedRows(paths, index_dir(data_root))
    for table in rows.tables:
        missing = [c for c in SEQUENCE_COLUMNS if c not in table.schema.names]
        if missing:
            raise CollateError(f"{table.source}: not a packed sequence shard, missing columns {missing}")
    return rows


# -- resolving samples -----------------------------------------------------------------------


class SampleStore:
    """Conversations and video frames under a data root, read one sample at a time.

    ``conversation(sample_id, source)`` looks the row up in ``chatml/<source>/conversations.parquet``
    through a memory-mapped Arrow copy and a hash index (``training.sample_index``, built once
    per file and shared by every rank on a host), so a rank holds the rows it collates, not the
    tables. ``video_inputs(sample_id, video_no)`` finds the sample's video the same way in
    ``video_frames/samples.parquet`` and ``videos.parquet`` and reads its frames shard (a moved
    data root is handled: a ``frames_file`` that is not where it was written is looked up under
    ``video_frames/frames/``). ``decode_workers``: cores for decoding a plan shard's frames;
    None = this rank's share of the host (its cores / ``LOCAL_WORLD_SIZE``, which torchrun
    sets), so ranks on one host do not oversubscribe it; 1 in each of several data-loader workers.
    """

    def __init__(self, data_root: str | Path, decode_workers: int | None = None) -> None:
        self.root = Path(data_root)
        self.layout = DataLayout(self.root)
        if decode_workers is None:
            ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
            decode_workers = max(1, host_cores() // ranks)
        self.decode_workers = decode_workers
        self.cache_dir = index_dir(self.root)
        self._tables: dict[str, list[MappedTable]] = {}
        self._video_tables: list[tuple[MappedTable, MappedTable]] | None = None

    def _source_table(self, source: str) -> list[MappedTable]:
        """Every shard's part of ``source`` (docs/shards.md), each mapped and indexed."""
        if source not in self._tables:
            parts = self.layout.conversation_parts(source)
            if not parts:
                raise SampleNotFoundError(f"source {source!r}: no conversation table at {self.layout.chatml(source)}")
            self._tables[source] = [MappedTable(p, self.cache_dir, key="sample_id") for p in parts]
        return self._tables[source]

    def conversation(self, sample_id: str, source: str | None = None) -> dict[str, Any]:
        """The conversation row of ``sample_id`` (searching every source when none is given)."""
        sources = [source] if source else self.layout.chatml_sources()
        for s in sources:
            for part in self._source_table(s):
                found = part.lookup(sample_id)
                if found:
                    return found[0]
        where = self.layout.conversations(source or "*")
        raise SampleNotFoundError(f"sample {sample_id!r} not found in {where}")

    def _video_entry(self, sample_id: str, video_no: int) -> dict[str, Any] | None:
        """The sample's ``samples.parquet`` row joined with its ``videos.parquet`` row (as
        ``assets.video.frames.sample_videos`` joins them), or None."""
        if self._video_tables is None:  # every shard's tables (a sample's video row is in its own shard's)
            self._video_tables = [
                (MappedTable(folder / "samples.parquet", self.cache_dir, key="sample_id"),
                 MappedTable(folder / "videos.parquet", self.cache_dir, key="video_key"))
                for folder in self.layout.video_frames_parts() if (folder / "videos.parquet").is_file()
            ]
        for samples, videos in self._video_tables:
            parts = [r for r in samples.lookup(sample_id) if r["video_no"] == video_no]
            if parts:
                break
        else:
            return None
        part = parts[-1]  # the last row wins, as in sample_videos' dict
        found = videos.lookup(part["video_key"]) if part["video_key"] else []
        missing = {"status": "missing", "reason": "missing", "detail": "video not in videos.parquet"}
        return {**(found[-1] if found else missing), "sample_path": part["path"], "video_key": part["video_key"]}

    def _frames_file(self, sample_id: str, video_no: int) -> tuple[Path, list[list[int]]]:
        entry = self._video_entry(sample_id, video_no)
        if entry is None:
            raise MissingMediaError(
                f"sample {sample_id!r}: video {video_no} has no entry in {self.layout.video_frames / 'samples.parquet'}"
            )
        if entry.get("status") != "ok":
            raise MissingMediaError(
                f"sample {sample_id!r}: video {video_no} ({entry.get('sample_path')}) was not sampled: "
                f"{entry.get('reason')} {entry.get('detail') or ''}".rstrip()
            )
        path = Path(entry["frames_file"])
        if not path.is_file():
            moved = self.layout.video_frames / "frames" / path.name
            if not moved.is_file():
                raise MissingMediaError(f"sample {sample_id!r}: video {video_no} frames file missing: {path}")
            path = moved
        return path, json.loads(entry["grids"])

    def video_inputs(self, sample_id: str, video_no: int) -> tuple[np.ndarray, np.ndarray]:
        """(pixel_values_videos rows, video_grid_thw rows) of one video of a sample: the frames
        of its shard, whatever the frame store (a plan shard decodes them from the source video,
        bit-identical to the png store's, ``load_frames``)."""
        path, grids = self._frames_file(sample_id, video_no)
        try:
            _, frames = load_frames(path, workers=self.decode_workers)
            rows = pq.read_table(path, columns=["frame", "grid_row"]).sort_by("frame").column("grid_row").to_pylist()
        except (OSError, pa.ArrowException, KeyError, ValueError) as exc:
            raise MissingMediaError(f"sample {sample_id!r}: video {video_no} frames file unreadable: {path}: {exc}") from None
        except FramesUnavailable as exc:
            raise MissingMediaError(f"sample {sample_id!r}: video {video_no}: {exc}") from None
        try:
            return video_pixel_values(frames, rows, [tuple(g) for g in grids])
        except ValueError as exc:
            raise CollateError(f"sample {sample_id!r}: video {video_no} ({path}): {exc}") from None


# -- one sample ------------------------------------------------------------------------------


@dataclass
class CollatedSample:
    """Tokens, labels, token types and visual inputs of one conversation."""

    sample_id: str
    input_ids: np.ndarray
    labels: np.ndarray
    token_types: np.ndarray
    pixel_values: list[np.ndarray] = field(default_factory=list)
    image_grid_thw: list[np.ndarray] = field(default_factory=list)
    pixel_values_videos: list[np.ndarray] = field(default_factory=list)
    video_grid_thw: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.input_ids.size)


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    out = []
    for part in content:
        kind = part.get("type")
        out.append(IMAGE_PLACEHOLDER if kind == "image" else VIDEO_PLACEHOLDER if kind == "video" else part.get("text") or "")
    return "".join(out)


def assistant_spans(messages: Sequence[Mapping[str, Any]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered ChatML and the character spans to learn: each assistant turn's content
    plus its ``<|im_end|>``. Rendering mirrors ``render_chatml`` piece by piece and is checked
    equal to it, so the spans index the canonical text."""
    pieces: list[str] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    for i, message in enumerate(messages):
        if i == 0 and message["role"] != "system":
            piece = f"{IM_START}system\n{DEFAULT_SYSTEM_PROMPT}{IM_END}\n"
            pieces.append(piece)
            pos += len(piece)
        header = f"{IM_START}{message['role']}\n"
        body = _message_text(message["content"])
        pieces += [header, body, f"{IM_END}\n"]
        if message["role"] == "assistant":
            start = pos + len(header)
            spans.append((start, start + len(body) + len(IM_END)))
        pos += len(header) + len(body) + len(IM_END) + 1
    text = "".join(pieces)
    if text != render_chatml(messages):  # pragma: no cover - guards against the renderer changing
        raise CollateError("label spans drifted from render_chatml; update assistant_spans")
    return text, spans


class SampleCollator:
    """Builds a :class:`CollatedSample` from a conversation row with one processor."""

    def __init__(self, processor: Any, store: SampleStore) -> None:
        self.processor = processor
        self.store = store
        tok = processor.tokenizer
        self.ids = {t: tok.convert_tokens_to_ids(t) for t in (IMAGE_PAD, VIDEO_PAD, VISION_START, VISION_END)}
        self.merge = int(getattr(processor.image_processor, "merge_size", 2))

    def image_inputs(self, sample_id: str, path: str) -> tuple[np.ndarray, np.ndarray]:
        from PIL import Image

        try:
            with Image.open(path) as img:
                image = img.convert("RGB")
        except (OSError, ValueError) as exc:
            raise MissingMediaError(f"sample {sample_id!r}: image file missing or unreadable: {path}: {exc}") from None
        out = self.processor.image_processor(images=[image], return_tensors="np")
        return np.asarray(out["pixel_values"], dtype=np.float32), np.asarray(out["image_grid_thw"], dtype=np.int64)

    def __call__(self, row: Mapping[str, Any]) -> CollatedSample:
        sample_id = row["sample_id"]
        text, spans = assistant_spans(row["messages"])
        enc = self.processor.tokenizer(text, return_offsets_mapping=True)
        ids = np.asarray(enc["input_ids"], dtype=np.int64)
        starts = np.asarray([o[0] for o in enc["offset_mapping"]], dtype=np.int64)
        learn = np.zeros(ids.size, dtype=bool)
        for a, b in spans:
            learn |= (starts >= a) & (starts < b)
        labels = np.where(learn, ids, IGNORE_INDEX)

        parts = [p for m in row["messages"] if not isinstance(m["content"], str) for p in m["content"]]
        visual = [p for p in parts if p.get("type") in ("image", "video")]
        pads = np.flatnonzero((ids == self.ids[IMAGE_PAD]) | (ids == self.ids[VIDEO_PAD]))
        if pads.size != len(visual):
            raise CollateError(f"sample {sample_id!r}: {pads.size} visual placeholders in the text, {len(visual)} media parts")
        out = CollatedSample(sample_id, ids, labels, np.zeros(ids.size, dtype=np.int64))
        id_chunks, label_chunks, type_chunks = [], [], []
        cursor, n_videos = 0, 0
        for j, part in zip(pads.tolist(), visual):
            if part["type"] == "image":
                if ids[j] != self.ids[IMAGE_PAD]:
                    raise CollateError(f"sample {sample_id!r}: media order differs from the placeholders at token {j}")
                pixels, grid = self.image_inputs(sample_id, part["path"])
                n = int(np.prod(grid, axis=1).sum()) // self.merge**2
                block_ids = np.full(n, self.ids[IMAGE_PAD], dtype=np.int64)
                block_types = np.full(n, 1, dtype=np.int64)
                a, b = j, j + 1
                out.pixel_values.append(pixels)
                out.image_grid_thw.append(grid)
            else:
                inside = 0 < j < ids.size - 1
                if not inside or ids[j - 1] != self.ids[VISION_START] or ids[j + 1] != self.ids[VISION_END]:
                    raise CollateError(f"sample {sample_id!r}: video placeholder {n_videos} is not a vision block")
                pixels, grids = self.store.video_inputs(sample_id, n_videos)
                n_videos += 1
                block_ids_l, block_types_l = [], []
                for t, h, w in grids.tolist():
                    k = t * h * w // self.merge**2
                    block_ids_l += [self.ids[VISION_START], *[self.ids[VIDEO_PAD]] * k, self.ids[VISION_END]]
                    block_types_l += [0, *[2] * k, 0]
                block_ids = np.asarray(block_ids_l, dtype=np.int64)
                block_types = np.asarray(block_types_l, dtype=np.int64)
                a, b = j - 1, j + 2
                out.pixel_values_videos.append(pixels)
                out.video_grid_thw.append(grids)
            id_chunks += [ids[cursor:a], block_ids]
            label_chunks += [labels[cursor:a], np.full(block_ids.size, IGNORE_INDEX, dtype=np.int64)]
            type_chunks += [np.zeros(a - cursor, dtype=np.int64), block_types]
            cursor = b
        id_chunks.append(ids[cursor:])
        label_chunks.append(labels[cursor:])
        type_chunks.append(np.zeros(ids.size - cursor, dtype=np.int64))
        out.input_ids = np.concatenate(id_chunks)
        out.labels = np.concatenate(label_chunks)
        out.token_types = np.concatenate(type_chunks)
        return out


# -- packed sequences ------------------------------------------------------------------------


@dataclass
class PackedBatch:
    """Model inputs for one packed sequence (batch of one) plus what produced them.

    ``model_inputs()`` is what to call the model with (``model(**batch.model_inputs())``).
    ``cu_seqlens`` (int32), ``boundaries`` and ``sample_ids`` describe the samples; ``positions``
    keeps the M-RoPE rows and the per-sample text row.
    """

    seq_id: str
    mode: str
    sample_ids: list[str]
    input_ids: torch.Tensor
    labels: torch.Tensor
    mm_token_type_ids: torch.Tensor
    positions: PackedPositions
    attention: dict[str, Any]
    pixel_values: torch.Tensor | None = None
    image_grid_thw: torch.Tensor | None = None
    pixel_values_videos: torch.Tensor | None = None
    video_grid_thw: torch.Tensor | None = None

    @property
    def cu_seqlens(self) -> torch.Tensor:
        return self.positions.cu_seqlens

    @property
    def boundaries(self) -> list[tuple[int, int]]:
        return self.positions.boundaries

    @property
    def n_tokens(self) -> int:
        return int(self.input_ids.shape[1])

    def model_inputs(self, device: str | torch.device | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "input_ids": self.input_ids,
            "labels": self.labels,
            "mm_token_type_ids": self.mm_token_type_ids,
            **self.attention,
        }
        for name in ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if device is not None:
            out = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in out.items()}
        return out


class PackedBatchBuilder:
    """Turns a packed sequence row into a :class:`PackedBatch`.

    ``mode`` overrides the row's mode (None = the row's). ``position_fn`` is a position rule
    from ``training.positions.packed`` (stock by default; ``position_rule_for_model(model)``
    for V2PE). ``attn_implementation`` is the model's (``model.config._attn_implementation``):
    it only matters with ``explicit_mask``.
    """

    def __init__(self, processor: Any, store: SampleStore, mode: str | None = None,
                 position_fn: PositionRule | None = None, attn_implementation: str = "sdpa",
                 explicit_mask: bool = False, check_lengths: bool = True) -> None:
        if mode is not None and mode not in MODES:
            raise ValueError(f"mode must be one of {MODES} or None, got {mode!r}")
        merge = int(getattr(processor.image_processor, "merge_size", 2))
        self.samples = SampleCollator(processor, store)
        self.store = store
        self.mode = mode
        self.position_fn = position_fn or StockMRoPE(merge)
        self.attn_implementation = attn_implementation
        self.explicit_mask = explicit_mask
        self.check_lengths = check_lengths

    def collate_samples(self, row: Mapping[str, Any]) -> list[CollatedSample]:
        sample_ids, sources = list(row["sample_ids"]), list(row.get("sources") or [None] * len(row["sample_ids"]))
        lengths = list(row.get("lengths") or [])
        out = []
        for k, (sid, source) in enumerate(zip(sample_ids, sources)):
            sample = self.samples(self.store.conversation(sid, source))
            if self.check_lengths and lengths and len(sample) != int(lengths[k]):
                raise CollateError(
                    f"sample {sid!r} ({source}): collated to {len(sample)} tokens but the shard says {lengths[k]} "
                    "(processor or media changed since token_counts ran)"
                )
            out.append(sample)
        return out

    def __call__(self, row: Mapping[str, Any]) -> PackedBatch:
        mode = self.mode or row.get("mode") or "isolated"
        samples = self.collate_samples(row)
        if not samples:
            raise CollateError(f"sequence {row.get('seq_id')!r} holds no samples")
        ids = np.concatenate([s.input_ids for s in samples])
        types = np.concatenate([s.token_types for s in samples])
        labels = np.concatenate([s.labels for s in samples])
        capacity = row.get("capacity")
        if capacity is not None and ids.size > int(capacity):
            raise CollateError(f"sequence {row.get('seq_id')!r}: {ids.size} tokens exceed the capacity {capacity}")

        def cat(chunks):
            chunks = [c for s in samples for c in chunks(s)]
            return torch.from_numpy(np.concatenate(chunks)) if chunks else None

        image_grids = cat(lambda s: s.image_grid_thw)
        video_grids = cat(lambda s: s.video_grid_thw)
        positions = packed_position_ids(types, [len(s) for s in samples], image_grids, video_grids, mode=mode,
                                        rule=self.position_fn)
        attention = isolated_attention_kwargs(positions, self.attn_implementation, self.explicit_mask)
        return PackedBatch(
            seq_id=str(row.get("seq_id", "")),
            mode=mode,
            sample_ids=[s.sample_id for s in samples],
            input_ids=torch.from_numpy(ids).unsqueeze(0),
            labels=torch.from_numpy(labels).unsqueeze(0),
            mm_token_type_ids=torch.from_numpy(types).unsqueeze(0),
            positions=positions,
            attention=attention,
            pixel_values=cat(lambda s: s.pixel_values),
            image_grid_thw=image_grids,
            pixel_values_videos=cat(lambda s: s.pixel_values_videos),
            video_grid_thw=video_grids,
        )


class PackedSequenceDataset(torch.utils.data.Dataset):
    """Sequence rows as a map-style dataset of :class:`PackedBatch` (micro-batch = one sequence):
    ``DataLoader(ds, batch_size=None)`` yields them as they are. With a V2PE rule bound to the
    model's sampler keep ``num_workers=0`` so the deltas come from the model's one stream."""

    def __init__(self, rows: Sequence[Mapping[str, Any]], builder: PackedBatchBuilder) -> None:
        self.rows = rows  # a list or ``open_packed_rows``' mapped rows: indexed, never copied
        self.builder = builder

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> PackedBatch:
        return self.builder(self.rows[i])
