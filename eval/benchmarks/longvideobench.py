"""LongVideoBench (longvideobench/LongVideoBench, val): loader, embedded sample, cells.

Checked against (dataset card / task code): LongVideoBench ``longvideobench/LongVideoBench``: ``lvb_val.json`` rows with video_id, id,
video_path, subtitle_path, question, candidates, correct_choice (int), duration,
duration_group (15/60/600/3600), question_category, topic_category,
starting_timestamp_for_subtitles; videos in ``videos.tar.part.*`` -> ``videos/<video_path>``
(the official ``LongVideoBenchDataset`` and lmms-eval ``longvideobench_val_v``).
"""

from __future__ import annotations

import json
import random
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eval.benchmarks.base import PCT, Benchmark, Column
from eval.embedded import (
    PATTERN_NAMES,
    duration_question,
    encode_clip,
    pattern_question,
    video_id,
)
from eval.formats import (
    LETTERS,
    MC_POST_PROMPT,
    FetchOptions,
    LoadContext,
)
from eval.items import CHOICE, EvalItem
from eval.scoring import lmms_metric, pct, pct_stats


def longvideobench_prompt(question: str, options: Mapping[str, str]) -> str:
    """The prompt of one LongVideoBench question (in the form of lmms-eval's ``longvideobench_doc_to_text``
    without subtitles); the base model's training clips are asked in it too."""
    option_lines = "\n".join(f"{k}. {v}" for k, v in options.items())
    return f"{question}\n{option_lines}\n{MC_POST_PROMPT}\n"


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
        items.append(
            EvalItem(
                benchmark=ctx.benchmark,
                item_id=qid,
                prompt=longvideobench_prompt(question, options),
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


LVB_CLIP_SECONDS = {15: 8, 60: 12, 600: 16, 3600: 20}  # duration group -> the embedded clip's length
VIDEOS_PER_GROUP = 2  # two questions each: 4 items a group


def generate_sample(root: Path, options: FetchOptions, seed: int) -> None:
    """longvideobench/LongVideoBench: ``lvb_val.json`` + ``videos.tar.part.aa`` (a split tar of
    ``videos/<video_path>``) + ``subtitles.tar``. Duration groups 15/60/600/3600 s are kept as
    labels on clips of 8-20 s."""
    rng = random.Random(f"longvideobench:{seed}")
    videos, subs, rows = [], [], []
    for group, seconds in [(g, s) for g, s in LVB_CLIP_SECONDS.items() for _ in range(VIDEOS_PER_GROUP)]:
        vid, pattern = video_id(rng), rng.randrange(len(PATTERN_NAMES))
        videos.append(
            encode_clip(root / "videos" / f"{vid}.mp4", seconds, pattern, rng.randint(0, 359))
        )
        sub = root / "subtitles" / f"{vid}_en.json"
        sub.parent.mkdir(parents=True, exist_ok=True)
        sub.write_text(
            json.dumps([{"start": "00:00:00.000", "end": f"00:00:{seconds:02d}.000", "line": "A test pattern is shown."}])
        )
        subs.append(sub)
        for j, (q, opts, right) in enumerate((pattern_question(rng, pattern, 5), duration_question(rng, seconds, 5))):
            rows.append(
                {
                    "video_id": vid,
                    "id": f"{vid}_{j}",
                    "video_path": f"{vid}.mp4",
                    "subtitle_path": f"{vid}_en.json",
                    "question": q,
                    "candidates": opts,
                    "correct_choice": right,
                    "duration": float(seconds),
                    "duration_group": group,
                    "question_category": "S2E" if j == 0 else "TOS",
                    "topic_category": "KS-Knowledge",
                    "starting_timestamp_for_subtitles": 0.0,
                }
            )
    rows.append({**rows[0], "id": "bad_choice", "correct_choice": 7})  # answer index outside the candidates
    (root / "lvb_val.json").write_text(json.dumps(rows, indent=1))
    with tarfile.open(root / "videos.tar.part.aa", "w") as tf:  # one part of the hub's split tar
        for f in videos:
            tf.add(f, f.relative_to(root).as_posix())
            f.unlink()
    with tarfile.open(root / "subtitles.tar", "w") as tf:
        for f in subs:
            tf.add(f, f.relative_to(root).as_posix())
            f.unlink()
    (root / "videos").rmdir()
    (root / "subtitles").rmdir()


LMMS_TASKS = ("longvideobench_val_v", "longvideobench_val_i")


class LongVideoBench(Benchmark):
    def load(self, ctx: LoadContext) -> list[EvalItem]:
        return load_longvideobench(ctx)

    def generate(self, root: Path, options: FetchOptions, seed: int) -> None:
        generate_sample(root, options, seed)

    def cells(self, summary: Mapping[str, Any]) -> dict[str, Any]:
        return {"longvideobench": pct(summary["accuracy"])}

    def cell_stats(self, summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        return {"longvideobench": pct_stats(summary)}

    def lmms_cells(self, tasks) -> dict[str, Any]:
        task = next((tasks[t] for t in LMMS_TASKS if t in tasks), None)
        if task is None:
            return {}
        acc = lmms_metric(task, "lvb_acc")
        return {"longvideobench": None if acc is None else 100 * acc}


BENCHMARK = LongVideoBench(
    name="longvideobench",
    title="LongVideoBench (val)",
    hub_id="longvideobench/LongVideoBench",  # gated: accept the terms on the hub and set HF_TOKEN
    kind="video",
    order=30,
    media_patterns=("videos.tar.part.*",),
    archives=("videos.tar",),
    split_archives=(("videos.tar.part.*", "videos.tar"),),
    split_label="duration_group",
    paper="GIRAFFE Table 5 (duration groups 8-15 s, 15-60 s, 180-600 s, 900-3600 s)",
    columns=(
        Column("longvideobench", "LongVideoBench val (%)", kind=PCT, description="accuracy over the duration groups (5 options: chance 20%)"),
    ),
    lmms_tasks=LMMS_TASKS[:1],
)
