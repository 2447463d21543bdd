"""Schema adapters: one published source record -> conversation-contract messages.

Each adapter reads the fields of the source's *published* schema and raises ``RejectRow``
with a reason for anything it cannot map; generic checks that apply to every source (roles,
turn order, empty turns, special tokens) run afterwards in ``assets.chatml.normalize``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from assets.contract.cleaning import IMAGE_PLACEHOLDERS, VIDEO_PLACEHOLDERS
from assets.contract.conversation import image_part, text_part, video_part
from assets.contract.media import MediaResolver, RejectRow

Messages = list[dict[str, Any]]
Adapter = Callable[[dict[str, Any], MediaResolver], Messages]

ROLE_ALIASES: dict[str, str] = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}
_PLACEHOLDER_RE = re.compile("|".join(re.escape(p) for p in IMAGE_PLACEHOLDERS + VIDEO_PLACEHOLDERS))


def _field(record: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in record or record[name] is None:
        raise RejectRow("malformed_row", f"missing field '{name}'")
    value = record[name]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise RejectRow("malformed_row", f"field '{name}' is {type(value).__name__}, expected {names}")
    return value


def _role(raw: Any) -> str:
    if not isinstance(raw, str) or raw.strip().lower() not in ROLE_ALIASES:
        raise RejectRow("invalid_role", f"unknown role {raw!r}")
    return ROLE_ALIASES[raw.strip().lower()]


def interleave_media(text: str, media: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Split text on media placeholders and put the media parts where they stood, in order."""
    pieces = _PLACEHOLDER_RE.split(text)
    n_slots = len(pieces) - 1
    if n_slots != len(media):
        raise RejectRow(
            "media_placeholder_mismatch",
            f"{n_slots} placeholder(s) in text but {len(media)} media item(s)",
        )
    parts: list[dict[str, Any]] = []
    for i, piece in enumerate(pieces):
        if piece.strip():
            parts.append(text_part(piece.strip("\n")))
        if i < len(media):
            parts.append(media[i])
    return parts


def count_placeholders(text: str) -> int:
    return len(_PLACEHOLDER_RE.findall(text))


def turns_with_media(turns: Sequence[tuple[str, str]], media: Sequence[dict[str, Any]]) -> Messages:
    """Messages from (role, text) turns whose text holds placeholders for ``media`` in order.

    Follows the LLaVA convention: when a record has media but no placeholder at all, the
    media go in front of the first user turn.
    """
    total = sum(count_placeholders(t) for _, t in turns)
    messages: Messages = []
    cursor = 0
    for i, (role, text) in enumerate(turns):
        if total == 0 and media and i == 0 and role == "user":
            parts = list(media) + ([text_part(text)] if text.strip() else [])
            cursor = len(media)
        else:
            n = count_placeholders(text)
            if cursor + n > len(media):
                raise RejectRow(
                    "media_placeholder_mismatch",
                    f"{total} placeholder(s) in text but {len(media)} media item(s)",
                )
            parts = interleave_media(text, media[cursor : cursor + n])
            cursor += n
        messages.append({"role": role, "content": parts})
    if cursor != len(media):
        raise RejectRow(
            "media_placeholder_mismatch",
            f"{total} placeholder(s) in text but {len(media)} media item(s)",
        )
    return messages


def _from_value_turns(conversations: Any, role_key: str, text_key: str) -> list[tuple[str, str]]:
    if not isinstance(conversations, list):
        raise RejectRow("malformed_row", f"conversation is {type(conversations).__name__}, expected list")
    if not conversations:
        raise RejectRow("empty_conversation", "no turns")
    turns = []
    for turn in conversations:
        if not isinstance(turn, dict):
            raise RejectRow("malformed_row", f"turn is {type(turn).__name__}, expected object")
        text = turn.get(text_key)
        if not isinstance(text, str):
            raise RejectRow("malformed_row", f"turn field '{text_key}' is {type(text).__name__}, expected str")
        turns.append((_role(turn.get(role_key)), text))
    return turns


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


# ---------------------------------------------------------------- long text


def longalign(record: dict[str, Any], media: MediaResolver) -> Messages:
    """THUDM/LongAlign-10k: ``messages`` = [{role, content}], plain text."""
    turns = _from_value_turns(_field(record, "messages", list), "role", "content")
    return [{"role": r, "content": [text_part(t)]} for r, t in turns]


def longalpaca(record: dict[str, Any], media: MediaResolver) -> Messages:
    """Yukang/LongAlpaca-12k: ``instruction`` (document + question) and ``output``."""
    instruction = _field(record, "instruction", str)
    extra = record.get("input")
    if isinstance(extra, str) and extra.strip():
        instruction = f"{instruction}\n\n{extra}"
    output = _field(record, "output", str)
    return [
        {"role": "user", "content": [text_part(instruction)]},
        {"role": "assistant", "content": [text_part(output)]},
    ]


# ---------------------------------------------------------------- images


def llava_conversations(record: dict[str, Any], media: MediaResolver) -> Messages:
    """LLaVA format (LLaVA-Instruct, ShareGPT4V, MMDU): ``image`` path(s) + ``conversations``
    of {from: human/gpt, value} with ``<image>`` placeholders."""
    turns = _from_value_turns(_field(record, "conversations", list), "from", "value")
    images = [image_part(media.image(p)) for p in _as_list(record.get("image"))]
    return turns_with_media(turns, images)


def m3it(record: dict[str, Any], media: MediaResolver) -> Messages:
    """M3IT: ``instruction``, ``inputs``, ``outputs`` and the images, either as the parquet
    export's ``image`` feature ({bytes, path}) or the original's ``image_base64_str`` list."""
    instruction = _field(record, "instruction", str)
    inputs = record.get("inputs") or ""
    if not isinstance(inputs, str):
        raise RejectRow("malformed_row", f"field 'inputs' is {type(inputs).__name__}, expected str")
    outputs = _field(record, "outputs", str)
    images = [image_part(media.inline_base64(b, ".jpg")) for b in _as_list(record.get("image_base64_str"))]
    images += [_image_feature(item, media) for item in _as_list(record.get("image"))]
    prompt = instruction if not inputs.strip() else f"{instruction}\n{inputs}"
    return [
        {"role": "user", "content": [*images, text_part(prompt)]},
        {"role": "assistant", "content": [text_part(outputs)]},
    ]


def _image_feature(item: Any, media: MediaResolver) -> dict[str, Any]:
    """A ``datasets.Image`` cell ({bytes, path}) or a bare path, as an image part."""
    if isinstance(item, dict) and item.get("bytes"):
        suffix = Path(str(item.get("path") or "x.png")).suffix or ".png"
        return image_part(media.inline_bytes(item["bytes"], suffix))
    if isinstance(item, dict):
        if not item.get("path"):
            raise RejectRow("missing_media", "image cell has neither bytes nor a path")
        return image_part(media.image(item["path"]))
    return image_part(media.image(item))


def mantis(record: dict[str, Any], media: MediaResolver) -> Messages:
    """TIGER-Lab/Mantis-Instruct: ``images`` = [{bytes, path}] and ``conversation`` =
    [{role, content}] with ``<image>`` placeholders."""
    turns = _from_value_turns(_field(record, "conversation", list), "role", "content")
    images = [_image_feature(item, media) for item in _as_list(record.get("images"))]
    return turns_with_media(turns, images)


def arxivqa_interleave(record: dict[str, Any], media: MediaResolver) -> Messages:
    """ArXivQA-interleave (reconstructed, paper Table 7 '*'): the figure QAs of one paper
    (MMInstruction/ArxivQA rows: ``image``, ``question``, ``options``, ``label``, ``rationale``)
    become one multi-image, multi-turn dialogue, figures interleaved with their questions."""
    rows = _field(record, "rows", list)
    messages: Messages = []
    for row in rows:
        question = _field(row, "question", str)
        options = _as_list(row.get("options"))
        label = _field(row, "label", str)
        rationale = row.get("rationale") or ""
        figure = image_part(media.image(_field(row, "image", str)))
        prompt = question if not options else question + "\n" + "\n".join(str(o) for o in options)
        answer = label if not str(rationale).strip() else f"{label}\n{rationale}"
        messages.append({"role": "user", "content": [figure, text_part(prompt)]})
        messages.append({"role": "assistant", "content": [text_part(answer)]})
    return messages


def arxiv_paper_key(row: dict[str, Any]) -> str:
    """Group key for ArXivQA rows: the arXiv id at the start of the figure file name."""
    image = row.get("image")
    name = str(image).rsplit("/", 1)[-1] if image else str(row.get("id", ""))
    match = re.match(r"(\d{4}\.\d{4,5})", name)
    return match.group(1) if match else name


# ---------------------------------------------------------------- video


def llava_video(record: dict[str, Any], media: MediaResolver) -> Messages:
    """LLaVA-Video-178K / ShareGPT4Video / ShareGPT-4o style: ``video`` path + ``conversations``
    of {from, value}; the placeholder is ``<image>`` (LLaVA-NeXT) or ``<video>``."""
    turns = _from_value_turns(_field(record, "conversations", list), "from", "value")
    videos = [video_part(media.video(p)) for p in _as_list(record.get("video"))]
    if not videos:
        raise RejectRow("malformed_row", "missing field 'video'")
    return turns_with_media(turns, videos)


def sharegpt4video(record: dict[str, Any], media: MediaResolver) -> Messages:
    """ShareGPT4Video 40k: ``video_path`` + ``captions`` = [{idx, content}]; idx "-1" is the
    whole-video summary, the others caption keyframe segments (kept as a second turn)."""
    video = video_part(media.video(_field(record, "video_path", str)))
    captions = _field(record, "captions", list)
    by_idx = {str(c.get("idx")): c.get("content") for c in captions if isinstance(c, dict)}
    summary = by_idx.get("-1")
    if not isinstance(summary, str) or not summary.strip():
        raise RejectRow("malformed_row", "no whole-video caption (idx -1)")
    segments = [by_idx[k] for k in sorted((k for k in by_idx if k != "-1"), key=_int_or_inf)]
    messages: Messages = [
        {"role": "user", "content": [video, text_part("Describe this video in detail.")]},
        {"role": "assistant", "content": [text_part(summary)]},
    ]
    segments = [s for s in segments if isinstance(s, str) and s.strip()]
    if segments:
        messages.append({"role": "user", "content": [text_part("Describe what happens in each segment.")]})
        messages.append({"role": "assistant", "content": [text_part("\n".join(segments))]})
    return messages


def _int_or_inf(key: str) -> float:
    try:
        return int(key)
    except ValueError:
        return float("inf")


def mlvu(record: dict[str, Any], media: MediaResolver) -> Messages:
    """MLVU/MVLU: ``video``, ``question``, ``candidates``, ``answer`` (multiple choice)."""
    video = video_part(media.video(_field(record, "video", str)))
    question = _field(record, "question", str)
    candidates = _as_list(record.get("candidates"))
    answer = _field(record, "answer", str)
    letters = "ABCDEFGHIJ"
    if candidates:
        if answer not in [str(c) for c in candidates]:
            raise RejectRow("malformed_row", f"answer {answer!r} is not one of the candidates")
        options = "\n".join(f"({letters[i]}) {c}" for i, c in enumerate(candidates))
        prompt = f"{question}\nOptions:\n{options}\nAnswer with the option's letter."
        reply = f"({letters[[str(c) for c in candidates].index(answer)]}) {answer}"
    else:
        prompt, reply = question, answer
    return [
        {"role": "user", "content": [video, text_part(prompt)]},
        {"role": "assistant", "content": [text_part(reply)]},
    ]
