"""Exact token counts of ChatML samples with the target model's processor and chat template.

A sample's length is what the processor would produce: the rendered ChatML (checked equal to
the model's template elsewhere) tokenised, with each image placeholder grown to the image's
merged-token count (the processor's own ``get_number_of_image_patches`` on the file's size,
read from the header only) and each video placeholder replaced by its planned blocks (one
``<|vision_start|>...<|vision_end|>`` per grid row, see ``assets.video.hybrid``). Pads and vision
markers are special tokens, so growing them adds exactly that many tokens: counting is one
tokenisation per sample, and tests compare it with the processor's ``len(input_ids)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from assets.contract.chat_template import render_chatml
from assets.contract.conversation import Rejection
from assets.contract.media import RejectRow
from assets.contract.progress import Progress
from assets.contract.schema import described
from assets.video.inputs import video_text_tokens

STAGE = "token_counts"
IMAGE_MEMO_LIMIT = 200_000
COUNT_SCHEMA = described(
    pa.schema(
        [
            pa.field("sample_id", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("category", pa.string(), nullable=False),
            pa.field("n_tokens", pa.int64(), nullable=False),
            pa.field("n_text_tokens", pa.int64(), nullable=False),
            pa.field("n_image_tokens", pa.int64(), nullable=False),
            pa.field("n_video_tokens", pa.int64(), nullable=False),
            pa.field("n_images", pa.int32(), nullable=False),
            pa.field("n_videos", pa.int32(), nullable=False),
            pa.field("source_row", pa.int64()),
        ]
    ),
    {
        "sample_id": "the ChatML sample (chatml/<source>)",
        "source": "its source",
        "category": "its ETVLM category",
        "n_tokens": "exact length with the base model's processor and chat template: text + image + video tokens",
        "n_text_tokens": "tokens of the rendered chat text, special tokens included",
        "n_image_tokens": "image pad tokens from the image grids (grid_t x grid_h x grid_w / 4 per image)",
        "n_video_tokens": "video pad tokens from the frame plans in video_frames",
        "n_images": "image parts",
        "n_videos": "video parts",
        "source_row": "the sample's first raw row: with the source it restores the source's order across shards",
    },
)


@dataclass(frozen=True)
class ImagePatchRule:
    """Qwen2-VL's image patch count (``get_number_of_image_patches``) from four numbers, so a
    counting worker needs the tokenizer and this, not the processor: loading the processor
    imports torch (10 CPU-s and 390 MB a process here), the tokenizer alone 2 CPU-s and 70 MB.
    ``light_processor`` only uses it after checking it against the processor."""

    patch_size: int
    merge_size: int
    min_pixels: int
    max_pixels: int

    def get_number_of_image_patches(self, height: int, width: int, images_kwargs: dict | None = None) -> int:
        factor = self.patch_size * self.merge_size
        if max(height, width) / min(height, width) > 200:
            raise ValueError(f"absolute aspect ratio must be smaller than 200, got {max(height, width) / min(height, width)}")
        h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
        if h_bar * w_bar > self.max_pixels:
            beta = math.sqrt((height * width) / self.max_pixels)
            h_bar = max(factor, math.floor(height / beta / factor) * factor)
            w_bar = max(factor, math.floor(width / beta / factor) * factor)
        elif h_bar * w_bar < self.min_pixels:
            beta = math.sqrt(self.min_pixels / (height * width))
            h_bar = math.ceil(height * beta / factor) * factor
            w_bar = math.ceil(width * beta / factor) * factor
        return (h_bar // self.patch_size) * (w_bar // self.patch_size)


class BackendTokenizer:
    """A fast tokenizer's own Rust backend (``tokenizers.Tokenizer``), as the worker's tokenizer.

    Unpickling a transformers tokenizer in a counting worker imports transformers (2 CPU-s and
    70 MB a process here); the backend alone loads in 0.1 CPU-s and 20 MB. It is the object the
    transformers tokenizer itself calls (``encode_batch`` with special tokens, no truncation,
    no padding, its ``split_special_tokens``), so the ids are the same; ``light_processor`` also
    compares the two on ``PROBE_TEXTS`` before using it. ``lengths`` skips building the id
    lists, which counting does not need (``encode_batch_fast``, which also skips the offsets,
    measured slower here)."""

    def __init__(self, backend_json: str, split_special_tokens: bool = False):
        from tokenizers import Tokenizer

        self._state = (backend_json, bool(split_special_tokens))
        tok = Tokenizer.from_str(backend_json)
        tok.no_truncation()
        tok.no_padding()
        tok.encode_special_tokens = bool(split_special_tokens)
        self._tok = tok

    def __getstate__(self) -> tuple[str, bool]:
        return self._state

    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.__init__(*state)

    def lengths(self, texts: Sequence[str]) -> list[int]:
        return [len(e) for e in self._tok.encode_batch(list(texts), add_special_tokens=True)]

    def __call__(self, text: str | Sequence[str], return_attention_mask: bool = False) -> dict[str, Any]:
        """The ``input_ids`` the transformers tokenizer's call gives (one text or a batch)."""
        if isinstance(text, str):
            return {"input_ids": self._tok.encode(text, add_special_tokens=True).ids}
        return {"input_ids": [e.ids for e in self._tok.encode_batch(list(text), add_special_tokens=True)]}


# Texts the backend is checked on against the transformers tokenizer: the chat and vision
# markers, placeholders, unicode, odd whitespace, special tokens inside words.
PROBE_TEXTS = [
    ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
     "<|vision_start|><|image_pad|><|vision_end|>What is this?<|im_end|>\n<|im_start|>assistant\nA cat.<|im_end|>\n"),
    "<|vision_start|><|video_pad|><|vision_end|> frames\t\t  spaced\n\n\nlines  ",
    "Ünïcödé façade — 日本語のテキスト, emoji 🦒🦒, math ∑x² ≤ 10, tabs\tand\u00a0nbsp",
    "word<|im_end|>word<|endoftext|> <|im_start|>",
    "",
    " leading space, trailing space ",
    "x" * 300 + " " + "ab" * 200,
]


def backend_tokenizer(tokenizer: Any) -> Any:
    """``tokenizer``'s Rust backend as a ``BackendTokenizer`` when it gives the tokenizer's own
    ids on every ``PROBE_TEXTS`` text, one at a time and batched; ``tokenizer`` otherwise (a
    Python tokenizer, or one whose call does more than its backend)."""
    try:
        backend = tokenizer.backend_tokenizer
        light = BackendTokenizer(backend.to_str(), bool(getattr(tokenizer, "split_special_tokens", False)))
        expected = tokenizer(PROBE_TEXTS, return_attention_mask=False)["input_ids"]
        if light(PROBE_TEXTS)["input_ids"] != [list(x) for x in expected]:
            return tokenizer
        if light.lengths(PROBE_TEXTS) != [len(x) for x in expected]:
            return tokenizer
        if any(light(t)["input_ids"] != list(tokenizer(t)["input_ids"]) for t in PROBE_TEXTS):
            return tokenizer
    except Exception:  # noqa: BLE001 - no backend, or one that cannot be rebuilt: keep the tokenizer
        return tokenizer
    return light


@dataclass(frozen=True)
class LightProcessor:
    """What ``TokenCounter`` uses of a processor: its tokenizer and its image patch rule."""

    tokenizer: Any
    image_processor: ImagePatchRule


# Image sizes the rule is checked on: tiny, typical, huge, extreme aspect ratios.
CHECK_SIZES = [(h, w) for h in (14, 27, 56, 100, 224, 333, 480, 640, 1080, 2000, 4096) for w in (14, 28, 61, 224, 500, 720, 1920, 4000)]


def light_processor(processor: Any) -> Any:
    """A ``LightProcessor`` for ``processor`` when its patch rule gives the processor's own
    counts on every ``CHECK_SIZES`` size; the processor itself otherwise (another model). Its
    tokenizer is the checked Rust backend (``backend_tokenizer``) where there is one."""
    ip = getattr(processor, "image_processor", None)
    try:
        rule = ImagePatchRule(int(ip.patch_size), int(ip.merge_size), int(ip.size["shortest_edge"]), int(ip.size["longest_edge"]))
        for h, w in CHECK_SIZES:
            if max(h, w) / min(h, w) <= 200 and rule.get_number_of_image_patches(h, w, {}) != ip.get_number_of_image_patches(h, w, {}):
                return processor
    except (AttributeError, KeyError, TypeError, ValueError):
        return processor
    return LightProcessor(backend_tokenizer(processor.tokenizer), rule)


# Characters per tokenizer call (about 250K tokens of English): bounds a worker's encodings.
TEXT_CHARS_PER_CALL = 1 << 20


def char_groups(texts: Sequence[str], limit: int) -> list[list[str]]:
    """``texts`` cut into consecutive groups of at most ``limit`` characters (a longer text
    alone in its group), in order."""
    groups: list[list[str]] = []
    size = limit + 1
    for text in texts:
        if size + len(text) > limit:
            groups.append([])
            size = 0
        groups[-1].append(text)
        size += len(text)
    return groups


@dataclass
class TokenCounter:
    """Counts with one processor; ``videos`` maps (sample_id, video_no) -> grid rows, or to a
    (reason, detail) pair for a video the video stage rejected."""

    processor: Any
    videos: Mapping[tuple[str, int], Any]
    _image_memo: dict[str, int | RejectRow] = field(default_factory=dict, init=False, repr=False)

    def image_tokens(self, path: str) -> int:
        """Merged image tokens of the file at ``path``, read from its header once per path."""
        found = self._image_memo.get(path)
        if found is None:
            try:
                found = self._image_tokens(path)
            except RejectRow as exc:
                found = exc
            if len(self._image_memo) >= IMAGE_MEMO_LIMIT:
                self._image_memo.clear()
            self._image_memo[path] = found
        if isinstance(found, RejectRow):
            raise RejectRow(found.reason, found.detail)
        return found

    def _image_tokens(self, path: str) -> int:
        from PIL import Image

        try:
            with Image.open(path) as img:
                width, height = img.size
        except Exception as exc:  # unreadable or missing file
            raise RejectRow("unreadable_image", f"{path}: {exc}") from None
        ip = self.processor.image_processor
        return ip.get_number_of_image_patches(height, width, {}) // (ip.merge_size**2)

    def text_tokens(self, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Tokens of each row's rendered chat text, from batched tokenizer calls (the fast
        tokenizer's batch gives each text the ids it gets alone, and spreads the batch over
        its threads) of at most ``TEXT_CHARS_PER_CALL`` characters: a call holds an encoding
        (ids, offsets, token strings) of every token of its texts, about 105 B a token, so 512
        long documents in one call held 900 MB per worker."""
        texts = [render_chatml(r["messages"]) for r in rows]
        tokenizer = self.processor.tokenizer
        lengths: list[int] = []
        for group in char_groups(texts, TEXT_CHARS_PER_CALL):
            if isinstance(tokenizer, BackendTokenizer):
                lengths += tokenizer.lengths(group)
            else:
                lengths += [len(x) for x in tokenizer(group, return_attention_mask=False)["input_ids"]]
        return lengths

    def count(self, row: Mapping[str, Any], n_text: int | None = None) -> dict[str, Any]:
        """The row's counts; ``n_text`` is its text tokens when a batched call already has them."""
        messages = row["messages"]
        parts = [p for m in messages for p in m["content"]]
        if n_text is None:
            n_text = len(self.processor.tokenizer(render_chatml(messages))["input_ids"])
        image_tokens = video_tokens = 0
        n_images = n_videos = 0
        for p in parts:
            if p["type"] == "image":
                n_images += 1
                image_tokens += self.image_tokens(p["path"])
                n_text -= 1  # the placeholder's single pad becomes image tokens
            elif p["type"] == "video":
                plan = self.videos.get((row["sample_id"], n_videos))
                if plan is None:
                    raise RejectRow("video_not_sampled", f"video {n_videos} has no frame plan")
                if isinstance(plan, tuple) and len(plan) == 2 and isinstance(plan[0], str):
                    raise RejectRow(f"video_{plan[0]}", f"video {n_videos}: {plan[1]}")
                visual, markers = video_text_tokens(plan)
                video_tokens += visual
                n_text += markers - 2 - 1  # one block's markers and pad are already counted
                n_videos += 1
        return {
            "sample_id": row["sample_id"],
            "source": row["source"],
            "category": row["category"],
            "n_tokens": n_text + image_tokens + video_tokens,
            "n_text_tokens": n_text,
            "n_image_tokens": image_tokens,
            "n_video_tokens": video_tokens,
            "n_images": n_images,
            "n_videos": n_videos,
        }


def count_table(
    rows: Sequence[Mapping[str, Any]], counter: TokenCounter, progress: Progress | None = None
) -> tuple[list[dict], list[dict]]:
    """(counts, rejections) for conversation rows; a sample that cannot be counted is rejected.
    ``progress`` (if given) is told about every row."""
    counts, rejected = [], []
    for row, n_text in zip(rows, counter.text_tokens(rows)):
        try:
            # source_row: the sample's first raw row, which restores the unsharded order of the
            # merged shards (assets/defs/tokens.py: read_token_counts)
            counts.append({**counter.count(row, n_text), "source_row": min(row.get("source_rows") or [0])})
        except RejectRow as exc:
            source_rows = list(row.get("source_rows") or [])
            rejected.append(Rejection(row["sample_id"], row["source"], STAGE, exc.reason, exc.detail, source_rows).to_row())
        if progress is not None:
            progress.update()
    return counts, rejected


# What video_token_mismatches reads of samples.parquet and videos.parquet.
MISMATCH_SAMPLE_COLUMNS = ("source", "sample_id", "video_no", "video_key")
MISMATCH_VIDEO_COLUMNS = ("video_key", "status", "visual_tokens")


def video_token_mismatches(
    counts: Sequence[Mapping[str, Any]], samples: Sequence[Mapping[str, Any]], videos: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The check on the video_frames -> token_counts edge: every counted sample's
    ``n_video_tokens`` must equal the sum of ``visual_tokens`` of its videos in videos.parquet
    (found through samples.parquet), and ``n_videos`` the number of its video parts. Returns
    one row per sample that disagrees (empty when the edge holds)."""
    tokens = {v["video_key"]: v["visual_tokens"] for v in videos if v["status"] == "ok"}
    parts: dict[tuple[str, str], list[str | None]] = {}
    for s in sorted(samples, key=lambda s: s["video_no"]):
        parts.setdefault((s["source"], s["sample_id"]), []).append(s["video_key"])
    bad = []
    for c in counts:
        keys = parts.get((c["source"], c["sample_id"]), [])
        if not c["n_videos"] and not keys:
            continue
        expected = sum(int(tokens.get(k) or 0) for k in keys)
        if c["n_videos"] != len(keys) or c["n_video_tokens"] != expected or any(k not in tokens for k in keys):
            bad.append({"sample_id": c["sample_id"], "n_videos": c["n_videos"], "video_parts": len(keys),
                        "n_video_tokens": c["n_video_tokens"], "frames_visual_tokens": expected})
    return bad
