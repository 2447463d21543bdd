"""Video-MME (lmms-eval/Video-MME): loader, embedded sample, leaderboard cells by duration.

Checked against (dataset card / task code): VideoMME ``lmms-eval/Video-MME``: card features video_id, duration (short/medium/long),
domain, sub_category, url, videoID, question_id, task_type, question, options (list of
"A. ..."), answer (letter); ``videomme/test-*.parquet``; videos in ``videos_chunked_*.zip``
unpacked to ``data/<videoID>.mp4`` (lmms-eval ``videomme_doc_to_visual``).
"""

from __future__ import annotations

import random
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from assets.contract.markdown import PLOT_WIDE, figure_png, pyplot
from eval.benchmarks.base import PCT, Benchmark, Column, Plot
from eval.embedded import (
    PATTERN_NAMES,
    duration_question,
    encode_clip,
    pattern_question,
    video_id,
    write_parquet,
)
from eval.formats import (
    MC_POST_PROMPT,
    FetchOptions,
    LoadContext,
    first_existing,
    parse_lettered,
)
from eval.items import CHOICE, EvalItem
from eval.scoring import lmms_metric, pct, pct_stats, wilson_interval

VIDEOMME_OPTION_PROMPT = (
    "Select the best answer to the following multiple-choice question based on the video and the subtitles. "
    "Respond with only the letter (A, B, C, or D) of the correct option."
)


def videomme_prompt(question: str, options: Mapping[str, str]) -> str:
    """The prompt of one Video-MME question (in the form of lmms-eval's ``videomme_doc_to_text``); the base
    model's training clips are asked in it too."""
    option_lines = "\n".join(f"{k}. {v}" for k, v in options.items())
    return f"{VIDEOMME_OPTION_PROMPT}\n{question}\n{option_lines}\n\n{MC_POST_PROMPT}"


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
        video = first_existing(Path(f"{base}{s}") for s in (".mp4", ".MP4", ".mkv"))
        if video is None:
            ctx.reject(qid, "missing_media", f"video {vid} not found under {ctx.media_base / 'data'}", idx, row)
            continue
        prompt = videomme_prompt(question, options)
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


VIDEOMME_CLIP_SECONDS = {"short": 6, "medium": 12, "long": 20}
VIDEOS_PER_DURATION = 4  # two questions each: 8 items a duration


def generate_sample(root: Path, options: FetchOptions, seed: int) -> None:
    """lmms-eval/Video-MME: ``videomme/test-00000-of-00001.parquet`` + ``videos_chunked_01.zip``
    holding ``data/<videoID>.mp4``. Real durations are short < 2 min, medium 4-15 min, long
    30-60 min; the sample keeps the labels with clips of a few seconds (6/12/20 s) so the
    embedded evaluation stays cheap."""
    rng = random.Random(f"videomme:{seed}")
    staging = root / "data"
    files, rows = [], []
    n = 0
    for duration, seconds in VIDEOMME_CLIP_SECONDS.items():
        for _ in range(VIDEOS_PER_DURATION):
            n += 1
            vid, pattern = video_id(rng), rng.randrange(len(PATTERN_NAMES))
            files.append(
                encode_clip(staging / f"{vid}.mp4", seconds, pattern, rng.randint(0, 359))
            )
            for j, (q, opts, right) in enumerate((pattern_question(rng, pattern), duration_question(rng, seconds))):
                rows.append(
                    {
                        "video_id": f"{n:03d}",
                        "duration": duration,
                        "domain": "Knowledge",
                        "sub_category": "Technology",
                        "url": f"https://www.youtube.com/watch?v={vid}",
                        "videoID": vid,
                        "question_id": f"{n:03d}-{j + 1}",
                        "task_type": "Object Recognition" if j == 0 else "Temporal Perception",
                        "question": q,
                        "options": [f"{'ABCD'[i]}. {o}" for i, o in enumerate(opts)],
                        "answer": "ABCD"[right],
                    }
                )
    rows.append({**rows[0], "video_id": "999", "videoID": "MISSINGVID1", "question_id": "999-1"})  # video never shipped
    import datasets

    write_parquet(
        rows,
        {k: datasets.Value("string") for k in rows[0] if k != "options"}
        | {"options": datasets.Sequence(datasets.Value("string"))},
        root / "videomme" / "test-00000-of-00001.parquet",
    )
    with zipfile.ZipFile(root / "videos_chunked_01.zip", "w", compression=zipfile.ZIP_STORED) as zf:
        for f in files:
            zf.write(f, f.relative_to(root).as_posix())
            f.unlink()
    staging.rmdir()


VIDEOMME_DURATIONS = ("short", "medium", "long")


HATCHES = ("", "//", "..", "xx", "\\\\", "++", "oo", "--")
CHANCE_PCT = 25.0  # four options


def videomme_plot(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """Grouped bars: VideoMME accuracy by duration (and overall), one bar per model with its own
    hatch and its 95% Wilson interval; chance (25%) dotted."""
    groups = (*VIDEOMME_DURATIONS, "overall")
    models = [r for r in rows if r.get("videomme_overall") is not None]
    fig, ax = pyplot().subplots(figsize=PLOT_WIDE)
    width = 0.8 / max(1, len(models))
    for i, r in enumerate(models):
        ys = [r.get(f"videomme_{g}") or 0.0 for g in groups]
        xs = [g + (i - (len(models) - 1) / 2) * width for g in range(len(groups))]
        err = [[], []]
        for g, y in zip(groups, ys):
            st = (r.get("stats") or {}).get(f"videomme_{g}") or {}
            ci = wilson_interval(st["correct"], st["n"]) if st.get("correct") is not None and st.get("n") else None
            err[0].append(y - 100 * ci[0] if ci else 0.0)
            err[1].append(100 * ci[1] - y if ci else 0.0)
        ax.bar(xs, ys, width=width, label=f"{r['model']} ({r['method']}, {r['source']})", hatch=HATCHES[i % len(HATCHES)],
               edgecolor="black", linewidth=0.4, yerr=err, capsize=2, error_kw={"elinewidth": 0.7})
    ax.axhline(CHANCE_PCT, color="black", linestyle=":", linewidth=1, label=f"chance ({CHANCE_PCT:.0f}%)")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_ylabel("accuracy (%, 95% interval)")
    ax.set_ylim(0, 100)
    ax.set_title("Video-MME by duration")
    if models:
        ax.legend(fontsize=9)
    return figure_png(fig)


class VideoMME(Benchmark):
    def load(self, ctx: LoadContext) -> list[EvalItem]:
        return load_videomme(ctx)

    def generate(self, root: Path, options: FetchOptions, seed: int) -> None:
        generate_sample(root, options, seed)

    def cells(self, summary: Mapping[str, Any]) -> dict[str, Any]:
        out = {f"videomme_{d}": pct((summary["by_split"].get(d) or {}).get("accuracy")) for d in VIDEOMME_DURATIONS}
        return out | {"videomme_overall": pct(summary["accuracy"])}

    def cell_stats(self, summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        out = {f"videomme_{d}": pct_stats(summary["by_split"].get(d)) for d in VIDEOMME_DURATIONS}
        return out | {"videomme_overall": pct_stats(summary)}

    def lmms_cells(self, tasks) -> dict[str, Any]:
        if "videomme" not in tasks:
            return {}
        return {"videomme_overall": lmms_metric(tasks["videomme"], "videomme_perception_score")}

    def plots(self, results, rows, labels, threshold, context=None) -> list[Plot]:
        return [("videomme_by_duration", "Video-MME by duration", videomme_plot(rows))]


BENCHMARK = VideoMME(
    name="videomme",
    title="Video-MME",
    hub_id="lmms-eval/Video-MME",  # lmms-eval tasks/videomme/videomme.yaml (repo moved from lmms-lab)
    kind="video",
    order=20,
    media_patterns=("videos_chunked_*.zip",),
    archives=("videos_chunked_*.zip",),
    split_label="duration",
    paper="GIRAFFE Table 5 (short / medium / long / overall)",
    columns=(
        Column("videomme_short", "Video-MME short (%)", kind=PCT, description="accuracy on short videos (< 2 min on the hub; 6 s clips in the embedded sample)"),
        Column("videomme_medium", "Video-MME medium (%)", kind=PCT, description="accuracy on medium videos (4-15 min on the hub; 12 s clips embedded)"),
        Column("videomme_long", "Video-MME long (%)", kind=PCT, description="accuracy on long videos (30-60 min on the hub; 20 s clips embedded)"),
        Column("videomme_overall", "Video-MME overall (%)", kind=PCT, description="accuracy over every Video-MME item (4 options: chance 25%)"),
    ),
    lmms_tasks=("videomme",),
)
