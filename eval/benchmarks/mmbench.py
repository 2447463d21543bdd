"""MMBench (lmms-lab-encoder/MMBench, en dev): loader, embedded sample, cells.

Checked against (dataset card / task code): MMBench ``lmms-lab-encoder/MMBench`` config ``en``: ``en/dev-*.parquet`` with index, question, hint,
answer, A, B, C, D (absent options empty), category, image, source, L2-category, comment,
split (lmms-eval ``mmbench_en_dev``; prompt from ``mmbench_doc_to_text``).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops

from assets.sources.embedded.media import COLOURS, image_bytes
from eval.benchmarks.base import PCT, Benchmark, Column, LmmsLocalTask
from eval.embedded import (
    SHAPES,
    choices,
    draw_objects,
    write_parquet,
)
from eval.formats import (
    MC_POST_PROMPT,
    FetchOptions,
    LoadContext,
    clean_cell,
    image_file,
    safe_name,
)
from eval.items import CHOICE, EvalItem
from eval.scoring import lmms_metric, pct, pct_stats

MMBENCH_OPTIONS_HEADER = "There are several options:"


def load_mmbench(ctx: LoadContext) -> list[EvalItem]:
    items = []
    for idx, row in enumerate(ctx.rows(["en/dev-*.parquet"], image_columns=("image",))):
        index = str(row.get("index") if row.get("index") is not None else f"row{idx}")
        options = {k: clean_cell(row.get(k)) for k in "ABCDE"}
        options = {k: v for k, v in options.items() if v is not None}
        answer = str(row.get("answer") or "").strip().upper()
        if answer not in options:
            ctx.reject(index, "bad_answer", f"answer {answer!r} not among options {list(options)}", idx, {"index": index})
            continue
        try:
            path = image_file(row["image"], ctx.media_out / "mmbench", safe_name(index))
        except (KeyError, ValueError) as exc:
            ctx.reject(index, "missing_media", str(exc), idx, {"index": index})
            continue
        hint = clean_cell(row.get("hint"))
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
                    "source_row": idx,
                    "l2_category": row.get("L2-category", row.get("l2-category")),
                    "source": row.get("source"),
                    "hint": hint,
                },
            )
        )
    return items


_PLACES = {"left": ((0, 28), (56, 28)), "right": ((56, 28), (0, 28)), "above": ((28, 0), (28, 56)), "below": ((28, 56), (28, 0))}
"""Spatial relationship: where the first object (then the second) is pasted for each answer."""
_WHERE = {(0, 0): "top left", (1, 0): "top right", (0, 1): "bottom left", (1, 1): "bottom right"}


def _alone(obj: tuple[str, str], rng: random.Random) -> Image.Image:
    """One drawn object cropped to its bounding box (the background is the tile's commonest colour)."""
    tile = draw_objects([obj], 56, rng)
    background = max(tile.getcolors(1 << 16))[1]
    return tile.crop(ImageChops.difference(tile, Image.new("RGB", tile.size, background)).getbbox())


def _mmbench_item(rng: random.Random, category: str) -> tuple[Image.Image, str, str, list[str], int]:
    """(image, question, hint, options, index of the right one)."""
    colours = list(COLOURS)
    if category == "attribute_recognition":
        colour, shape = rng.choice(colours), rng.choice(SHAPES)
        img = draw_objects([(colour, shape)], 112, rng)
        opts, right = choices(rng, colour, colours, rng.choice((3, 4)))
        return img, f"What colour is the {shape}?", "", opts, right
    if category == "object_localization":
        colour, shape = rng.choice(colours), rng.choice(SHAPES)
        cell = rng.choice(list(_WHERE))
        img = Image.new("RGB", (112, 112), (245, 245, 240))
        img.paste(draw_objects([(colour, shape)], 56, rng).crop((0, 0, 56, 56)), (56 * cell[0], 56 * cell[1]))
        opts, right = choices(rng, _WHERE[cell], list(_WHERE.values()), 4)
        hint = "The image is divided into four equal quarters."
        return img, f"Where is the {colour} {shape} in the image?", hint, opts, right
    if category == "spatial_relationship":
        a, b = rng.sample([(c, s) for c in colours for s in SHAPES], 2)
        relation = rng.choice(tuple(_PLACES))  # every relation in turn: a fixed one is a prior to learn, not a picture
        img = Image.new("RGB", (112, 112), (245, 245, 240))
        for obj, at in zip((a, b), _PLACES[relation]):
            shape = _alone(obj, rng)  # centred in its slot: an off-centre pair reads as diagonal
            img.paste(shape, (at[0] + (56 - shape.width) // 2, at[1] + (56 - shape.height) // 2))
        opts, right = choices(rng, relation, list(_PLACES), 4)
        return img, f"Where is the {a[0]} {a[1]} relative to the {b[0]} {b[1]}?", "", opts, right
    raise ValueError(category)


def generate_sample(root: Path, options: FetchOptions, seed: int) -> None:
    """lmms-lab-encoder/MMBench config ``en``: ``en/dev-00000-of-00001.parquet`` (index (int64), question,
    hint, answer, A-D with absent options empty, category, image, source, L2-category, comment,
    split)."""
    import datasets

    rng = random.Random(f"mmbench:{seed}")
    l2 = {
        "attribute_recognition": "finegrained_perception (instance-level)",
        "object_localization": "finegrained_perception (instance-level)",
        "spatial_relationship": "finegrained_perception (cross-instance)",
    }
    rows = []
    for category in l2:
        for _ in range(4):
            img, question, hint, opts, right = _mmbench_item(rng, category)
            letters = dict(zip("ABCD", opts + [None] * (4 - len(opts))))
            rows.append({
                "index": len(rows) + 1000,
                "question": question,
                "hint": hint or None,
                "answer": "ABCD"[right],
                **letters,
                "category": category,
                "image": {"bytes": image_bytes(img, "PNG"), "path": f"{len(rows)}.png"},
                "source": "giraffe_embedded",
                "L2-category": l2[category],
                "comment": None,
                "split": "dev",
            })
    rows.append({**rows[0], "index": 9999, "answer": "E"})  # answer letter with no option behind it
    # the hub's types: index int64 (lmms-eval's MMBench scorer compares it with 1e6), image an Image
    features = {k: datasets.Value("string") for k in rows[0]} | {"index": datasets.Value("int64"), "image": datasets.Image()}
    write_parquet(rows, features, root / "en" / "dev-00000-of-00001.parquet")


LMMS_TASKS = ("mmbench_en_dev", "mmbench_en")


class MMBench(Benchmark):
    def load(self, ctx: LoadContext) -> list[EvalItem]:
        return load_mmbench(ctx)

    def generate(self, root: Path, options: FetchOptions, seed: int) -> None:
        generate_sample(root, options, seed)

    def cells(self, summary: Mapping[str, Any]) -> dict[str, Any]:
        return {"mmbench": pct(summary["accuracy"])}

    def cell_stats(self, summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        return {"mmbench": pct_stats(summary)}

    def lmms_cells(self, tasks) -> dict[str, Any]:
        task = next((tasks[t] for t in LMMS_TASKS if t in tasks), None)
        return {} if task is None else {"mmbench": lmms_metric(task, "gpt_eval_score")}


BENCHMARK = MMBench(
    name="mmbench",
    title="MMBench (en, dev)",
    hub_id="lmms-lab-encoder/MMBench",  # lmms-eval tasks/mmbench/_default_template_mmbench_en_yaml
    kind="image",
    order=50,
    split_label="category",
    paper="GIRAFFE Table 6 (MMBench en)",
    short_context=True,
    columns=(
        Column("mmbench", "MMBench en dev (%)", kind=PCT, description="accuracy (3-4 options; chance is the mean of 1/options)"),
    ),
    regression_metric="mmbench",
    lmms_tasks=LMMS_TASKS[:1],
    lmms_local=(LmmsLocalTask("mmbench_en_dev", "mmbench/mmbench_en_dev.yaml", "dev", "en/dev-*.parquet"),),
)
