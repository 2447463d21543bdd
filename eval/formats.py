"""Published benchmark rows -> :class:`eval.items.EvalItem`, one loader per benchmark.

Each loader reads the files of the benchmark's hub repository through :class:`LoadContext`
(``datasets.load_dataset`` on the hub id or on the local embedded sample, same call), resolves
media the way the benchmark's own toolkit / lmms-eval task does, and builds the prompt as the
lmms-eval task's default ``doc_to_text`` does, so the native runner and an lmms-eval run ask
the same question. A row that cannot become an item (missing media, a malformed answer) is a
:class:`~assets.contract.conversation.Rejection` with a reason, never dropped silently.

What each loader was checked against (dataset cards / task code read while writing this):

* Visual Haystack: see ``eval.haystack``.
* VideoMME ``lmms-eval/Video-MME``: card features video_id, duration (short/medium/long),
  domain, sub_category, url, videoID, question_id, task_type, question, options (list of
  "A. ..."), answer (letter); ``videomme/test-*.parquet``; videos in ``videos_chunked_*.zip``
  unpacked to ``data/<videoID>.mp4`` (lmms-eval ``videomme_doc_to_visual``).
* LongVideoBench ``longvideobench/LongVideoBench``: ``lvb_val.json`` rows with video_id, id,
  video_path, subtitle_path, question, candidates, correct_choice (int), duration,
  duration_group (15/60/600/3600), question_category, topic_category,
  starting_timestamp_for_subtitles; videos in ``videos.tar.part.*`` -> ``videos/<video_path>``
  (the official ``LongVideoBenchDataset`` and lmms-eval ``longvideobench_val_v``).
* MME ``lmms-lab-encoder/MME``: ``data/test-*.parquet`` with question_id (the image, e.g.
  ``code_reasoning/0020.png``), image, question, answer (Yes/No), category; two questions per
  image (lmms-eval ``mme`` task: ``mme_aggregate_results`` asserts the pairs).
* MMBench ``lmms-lab-encoder/MMBench`` config ``en``: ``en/dev-*.parquet`` with index, question, hint,
  answer, A, B, C, D (absent options empty), category, image, source, L2-category, comment,
  split (lmms-eval ``mmbench_en_dev``; prompt from ``mmbench_doc_to_text``).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assets.contract.conversation import Rejection
from assets.sources.hub import HubSettings
from eval import haystack as vh
from eval.items import CHOICE, YES_NO, EvalItem

STAGE = "benchmark"
LETTERS = "ABCDEFGHIJ"
MC_POST_PROMPT = "Answer with the option's letter from the given choices directly."


@dataclass(frozen=True)
class FetchOptions:
    """Which items to take. ``max_items_per_split`` caps every split (MME pairs stay whole);
    the haystack fields choose Visual Haystack's image counts and items per count;
    ``image_root`` is where Visual Haystack image paths resolve on the hub (COCO 2017)."""

    max_items_per_split: int | None = None
    haystack_sizes: tuple[int, ...] = (1, 2, 3, 5, 10, 25, 50, 100, 150)
    items_per_size: int = 4
    image_size: int = 56
    image_root: str | None = None
    seed: int = 0

    def generation_key(self) -> dict[str, Any]:
        """What the embedded generator depends on (part of the sample's stamp)."""
        return {"haystack_sizes": list(self.haystack_sizes), "items_per_size": self.items_per_size, "image_size": self.image_size}


@dataclass
class LoadContext:
    """Where a benchmark's rows and media are: ``location`` is what ``datasets.load_dataset``
    gets (hub id or local folder); ``media_base`` the folder archives were unpacked in;
    ``media_out`` where images stored inside the table are written as files."""

    benchmark: str
    location: str
    media_base: Path
    media_out: Path
    options: FetchOptions = field(default_factory=FetchOptions)
    settings: HubSettings = field(default_factory=HubSettings)
    cache_dir: Path | None = None
    rejected: list[Rejection] = field(default_factory=list)
    rows_in: int = 0

    def rows(self, data_files: Sequence[str], image_columns: Sequence[str] = ()) -> list[dict[str, Any]]:
        import datasets

        kwargs: dict[str, Any] = {
            "data_files": list(data_files),
            "split": "train",
            "token": self.settings.token,
            "revision": self.settings.revision,
        }
        if self.settings.max_rows:
            ds = datasets.load_dataset(self.location, streaming=True, **kwargs)
        else:
            ds = datasets.load_dataset(self.location, cache_dir=str(self.cache_dir) if self.cache_dir else None, **kwargs)
        for col in image_columns:
            if isinstance((ds.features or {}).get(col), datasets.Image):
                ds = ds.cast_column(col, datasets.Image(decode=False))
        rows = list(ds.take(self.settings.max_rows)) if self.settings.max_rows else list(ds)
        self.rows_in += len(rows)
        return rows

    def reject(self, sample_id: str, reason: str, detail: str, row_no: int, record: Any = "") -> None:
        self.rejected.append(Rejection(sample_id, self.benchmark, STAGE, reason, detail, [row_no], str(record)[:2000]))


def _first_existing(candidates: Iterable[Path]) -> Path | None:
    for p in candidates:
        if p.is_file():
            return p
    return None


def _clean(value: Any) -> str | None:
    """A text cell, or None for the empty/NaN/"nan" cells of pandas-made parquet files."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    text = str(value).strip()
    return None if text == "" or text.lower() == "nan" else text


def image_file(value: Any, out_dir: Path, stem: str) -> Path:
    """Write an image cell ({bytes, path} or a PIL image) to ``out_dir`` once; return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(value, dict):
        data, name = value.get("bytes"), value.get("path") or ""
        if not data:
            raise ValueError("image cell has no bytes")
        ext = Path(name).suffix.lower() or ".png"
        path = out_dir / f"{stem}{ext}"
        if not path.is_file():
            path.write_bytes(data)
        return path
    if hasattr(value, "save"):
        path = out_dir / f"{stem}.png"
        if not path.is_file():
            value.save(path)
        return path
    raise ValueError(f"not an image cell: {type(value).__name__}")


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def limit_per_split(items: list[EvalItem], n: int | None, seed: int) -> list[EvalItem]:
    """At most ``n`` items per split, drawn by whole groups (seeded), original order kept."""
    if n is None:
        return items
    by_split: dict[str, dict[str, list[int]]] = {}
    for i, item in enumerate(items):
        by_split.setdefault(item.split, {}).setdefault(item.group, []).append(i)
    keep: set[int] = set()
    for split, groups in by_split.items():
        order = list(groups)
        random.Random(f"{seed}:{split}").shuffle(order)
        taken = 0
        for g in order:
            if taken >= n:
                break
            keep.update(groups[g])
            taken += len(groups[g])
    return [item for i, item in enumerate(items) if i in keep]


# ----------------------------------------------------------------------------- Visual Haystack


def _haystack_answer(row: dict[str, Any]) -> str:
    try:
        return str(row["conversations"][1]["value"]).strip().lower().rstrip(".")
    except (KeyError, IndexError, TypeError):
        return ""


def load_visual_haystack(ctx: LoadContext) -> list[EvalItem]:
    opts = ctx.options
    image_root = Path(opts.image_root) if opts.image_root else ctx.media_base
    files: dict[int, list[dict[str, Any]]] = {}
    items = []
    for n in sorted(set(opts.haystack_sizes)):
        count = vh.source_count(n)
        if count not in files:
            files[count] = ctx.rows([vh.file_path(count)])
            for idx, row in enumerate(files[count]):  # reported once per file, whichever counts use it
                answer = _haystack_answer(row)
                if answer not in ("yes", "no"):
                    ctx.reject(f"vh-{vh.file_key(count)}-{idx}", "bad_answer", f"answer {answer!r} is not yes/no", idx, row)
        rows = files[count]
        rng = random.Random(f"visual_haystack:{opts.seed}:{n}")
        by_answer: dict[str, list[int]] = {"yes": [], "no": []}
        for idx, row in enumerate(rows):
            by_answer.setdefault(_haystack_answer(row), []).append(idx)
        for v in by_answer.values():
            rng.shuffle(v)
        half = opts.items_per_size // 2
        chosen = by_answer["yes"][: opts.items_per_size - half] + by_answer["no"][:half]
        short = opts.items_per_size - len(chosen)  # one answer ran out: fill from the other
        if short > 0:
            rest = [i for i in by_answer["yes"] + by_answer["no"] if i not in chosen]
            chosen += rest[:short]
        for idx in sorted(chosen):
            item_id = f"vh-{n}-{vh.file_key(count)}-{idx}"
            row = rows[idx]
            try:
                convs = row["conversations"]
                q = re.sub(r"<image>\s*", "", str(convs[0]["value"])).strip()
                answer = str(convs[1]["value"]).strip().lower().rstrip(".")
                pos, negs = list(row["pos_image"] or []), list(row["neg_image"] or [])
            except (KeyError, IndexError, TypeError) as exc:
                ctx.reject(item_id, "malformed_row", f"{type(exc).__name__}: {exc}", idx, row)
                continue
            if len(pos) != 1:
                ctx.reject(item_id, "not_single_needle", f"{len(pos)} positive images", idx, row)
                continue
            if len(negs) < n - 1:
                ctx.reject(item_id, "too_few_distractors", f"{len(negs)} distractors for {n} images", idx, row)
                continue
            negs = negs if len(negs) == n - 1 else rng.sample(negs, n - 1)
            needle_at = rng.randrange(n)
            rel = negs[:needle_at] + pos + negs[needle_at:]
            paths = [image_root / p for p in rel]
            missing = [str(p) for p in paths if not p.is_file()]
            if missing:
                ctx.reject(item_id, "missing_media", f"{len(missing)} image(s) missing, e.g. {missing[0]}", idx, row)
                continue
            items.append(
                EvalItem(
                    benchmark=ctx.benchmark,
                    item_id=item_id,
                    prompt=vh.PROMPT_PREFIX + q,
                    answer=answer,
                    answer_type=YES_NO,
                    images=[str(p) for p in paths],
                    split=str(n),
                    extra={
                        "question": q,
                        "needle_index": needle_at,
                        "needle": pos[0],
                        "source_file": vh.file_path(count),
                        "source_row": idx,
                        "subsampled": count != n,
                    },
                )
            )
    return items


# ----------------------------------------------------------------------------- videos

VIDEOMME_OPTION_PROMPT = (
    "Select the best answer to the following multiple-choice question based on the video and the subtitles. "
    "Respond with only the letter (A, B, C, or D) of the correct option."
)


def parse_lettered(options: Sequence[str]) -> dict[str, str]:
    """["A. foo", "B. bar"] -> {"A": "foo", "B": "bar"}; unlettered entries take their position."""
    out = {}
    for i, opt in enumerate(options):
        m = re.match(r"^\s*\(?([A-J])[\.\):]\s*(.*)$", str(opt), re.S)
        out[m.group(1) if m else LETTERS[i]] = (m.group(2) if m else str(opt)).strip()
    return out


def load_videomme(ctx: LoadContext) -> list[EvalItem]:
    items = []
    for idx, row in enumerate(ctx.rows(["videomme/test-*.parquet"])):
        qid = str(row.get("question_id") or f"row{idx}")
        try:
            vid, question, answer = str(row["videoID"]), str(row["question"]), str(row["answer"]).strip().upper()
            options = parse_lettered(list(row["options"]))
            duration = str(row["duration"])
        except (KeyError, TypeError) as exc:
            ctx.reject(qid, "malformed_row", f"{type(exc).__name__}: {exc}", idx, row)
            continue
        if answer not in options:
            ctx.reject(qid, "bad_answer", f"answer {answer!r} not among options {list(options)}", idx, row)
            continue
        base = ctx.media_base / "data" / vid
        video = _first_existing(Path(f"{base}{s}") for s in (".mp4", ".MP4", ".mkv"))
        if video is None:
            ctx.reject(qid, "missing_media", f"video {vid} not found under {ctx.media_base / 'data'}", idx, row)
            continue
        option_lines = "\n".join(f"{k}. {v}" for k, v in options.items())
        prompt = f"{VIDEOMME_OPTION_PROMPT}\n{question}\n{option_lines}\n\n{MC_POST_PROMPT}"
        items.append(
            EvalItem(
                benchmark=ctx.benchmark,
                item_id=qid,
                prompt=prompt,
                answer=answer,
                answer_type=CHOICE,
                options=options,
                video=str(video),
                split=duration,
                group=vid,
                extra={k: row.get(k) for k in ("video_id", "videoID", "domain", "sub_category", "task_type")},
            )
        )
    return items


def load_longvideobench(ctx: LoadContext) -> list[EvalItem]:
    items = []
    for idx, row in enumerate(ctx.rows(["lvb_val.json"])):
        qid = str(row.get("id") or f"row{idx}")
        try:
            candidates = [str(c) for c in row["candidates"]]
            correct = int(row["correct_choice"])
            question, video_path = str(row["question"]), str(row["video_path"])
            group = str(row["duration_group"])
        except (KeyError, TypeError, ValueError) as exc:
            ctx.reject(qid, "malformed_row", f"{type(exc).__name__}: {exc}", idx, row)
            continue
        if not 0 <= correct < len(candidates):
            ctx.reject(qid, "bad_answer", f"correct_choice {correct} with {len(candidates)} candidates", idx, row)
            continue
        video = ctx.media_base / "videos" / video_path
        if not video.is_file():
            ctx.reject(qid, "missing_media", f"video not found: {video}", idx, row)
            continue
        options = {LETTERS[i]: c for i, c in enumerate(candidates)}
        option_lines = "\n".join(f"{k}. {v}" for k, v in options.items())
        items.append(
            EvalItem(
                benchmark=ctx.benchmark,
                item_id=qid,
                prompt=f"{question}\n{option_lines}\n{MC_POST_PROMPT}\n",
                answer=LETTERS[correct],
                answer_type=CHOICE,
                options=options,
                video=str(video),
                split=group,
                group=str(row.get("video_id") or video_path),
                extra={k: row.get(k) for k in ("video_id", "duration", "question_category", "topic_category")},
            )
        )
    return items


# ----------------------------------------------------------------------------- images

MME_REPLACE = " Please answer yes or no."
MME_POST_PROMPT = "\nAnswer the question using a single word or phrase."


def load_mme(ctx: LoadContext) -> list[EvalItem]:
    items = []
    seen: dict[str, int] = {}
    for idx, row in enumerate(ctx.rows(["data/test-*.parquet"], image_columns=("image",))):
        qid = str(row.get("question_id") or f"row{idx}")
        k = seen.get(qid, 0)
        seen[qid] = k + 1
        item_id = f"{qid}#{k}"
        answer = str(row.get("answer") or "").strip().lower().rstrip(".")
        if answer not in ("yes", "no"):
            ctx.reject(item_id, "bad_answer", f"answer {row.get('answer')!r} is not Yes/No", idx, {"question_id": qid})
            continue
        try:
            path = image_file(row["image"], ctx.media_out / "mme", _safe(str(Path(qid).with_suffix(""))))
        except (KeyError, ValueError) as exc:
            ctx.reject(item_id, "missing_media", str(exc), idx, {"question_id": qid})
            continue
        question = str(row["question"]).strip().replace(MME_REPLACE, "")
        items.append(
            EvalItem(
                benchmark=ctx.benchmark,
                item_id=item_id,
                prompt=f"{question}{MME_POST_PROMPT}",
                answer=answer,
                answer_type=YES_NO,
                images=[str(path)],
                split=str(row["category"]),
                group=qid,
                extra={"question_id": qid},
            )
        )
    return items


MMBENCH_OPTIONS_HEADER = "There are several options:"


def load_mmbench(ctx: LoadContext) -> list[EvalItem]:
    items = []
    for idx, row in enumerate(ctx.rows(["en/dev-*.parquet"], image_columns=("image",))):
        index = str(row.get("index") if row.get("index") is not None else f"row{idx}")
        options = {k: _clean(row.get(k)) for k in "ABCDE"}
        options = {k: v for k, v in options.items() if v is not None}
        answer = str(row.get("answer") or "").strip().upper()
        if answer not in options:
            ctx.reject(index, "bad_answer", f"answer {answer!r} not among options {list(options)}", idx, {"index": index})
            continue
        try:
            path = image_file(row["image"], ctx.media_out / "mmbench", _safe(index))
        except (KeyError, ValueError) as exc:
            ctx.reject(index, "missing_media", str(exc), idx, {"index": index})
            continue
        hint = _clean(row.get("hint"))
        options_prompt = MMBENCH_OPTIONS_HEADER + "\n" + "\n".join(f"{k}. {v}" for k, v in options.items())
        query = f"{hint} {row['question']} {options_prompt}" if hint else f"{row['question']} {options_prompt}"
        items.append(
            EvalItem(
                benchmark=ctx.benchmark,
                item_id=index,
                prompt=f"{query}\n\n{MC_POST_PROMPT}",
                answer=answer,
                answer_type=CHOICE,
                options=options,
                images=[str(path)],
                split=str(row.get("category")),
                extra={
                    "l2_category": row.get("L2-category", row.get("l2-category")),
                    "source": row.get("source"),
                    "hint": hint,
                },
            )
        )
    return items


LOADERS: dict[str, Callable[[LoadContext], list[EvalItem]]] = {
    "visual_haystack": load_visual_haystack,
    "videomme": load_videomme,
    "longvideobench": load_longvideobench,
    "mme": load_mme,
    "mmbench": load_mmbench,
}
