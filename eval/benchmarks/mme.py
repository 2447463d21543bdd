"""MME (lmms-lab-encoder/MME): loader, embedded sample, perception/cognition scores.

MME (Fu et al., 2023; lmms-eval ``mme_aggregate_results``): per category, ``acc`` is the
share of questions answered right and ``acc+`` the share of images whose two questions are
both right; the category score is ``(acc + acc+) * 100`` (at most 200); perception is the sum
over the 10 perception categories (max 2000), cognition over the 4 cognition ones (max 800).

Checked against (dataset card / task code): MME ``lmms-lab-encoder/MME``: ``data/test-*.parquet`` with question_id (the image, e.g.
``code_reasoning/0020.png``), image, question, answer (Yes/No), category; two questions per
image (lmms-eval ``mme`` task: ``mme_aggregate_results`` asserts the pairs).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from assets.contract.markdown import Markdown, markdown_table
from assets.sources.embedded.media import COLOURS, image_bytes
from eval.benchmarks.base import PCT, SCORE, Benchmark, Column, LmmsLocalTask
from eval.embedded import (
    SHAPES,
    draw_objects,
    text_image,
    write_parquet,
)
from eval.formats import (
    FetchOptions,
    LoadContext,
    image_file,
    safe_name,
)
from eval.items import YES_NO, EvalItem
from eval.scoring import Row, lmms_metric

MME_PERCEPTION = (
    "existence",
    "count",
    "position",
    "color",
    "posters",
    "celebrity",
    "scene",
    "landmark",
    "artwork",
    "OCR",
)


MME_COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")


MME_FULL_MAX = 2000 + 800  # 10 perception + 4 cognition categories, 200 each
MME_CATEGORY_MAX = 200  # acc + acc+ in %, per category
MME_CATEGORY_CHANCE = 75  # a coin per question: acc 50% + acc+ 25% (both of an image's two questions)


def mme_scores(rows: Sequence[Row]) -> dict[str, Any]:
    """MME perception/cognition scores from rows whose ``split`` is the category and ``group``
    the image (question_id). An image without exactly two questions is still scored (acc+
    needs all of its questions right) and counted in ``unpaired_images``."""
    by_cat: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by_cat[str(r["split"])][str(r["group"])].append(bool(r["correct"]))
    categories: dict[str, dict[str, Any]] = {}
    unpaired = 0
    for cat, images in by_cat.items():
        answers = [a for v in images.values() for a in v]
        acc = sum(answers) / len(answers)
        acc_plus = sum(all(v) for v in images.values()) / len(images)
        unpaired += sum(len(v) != 2 for v in images.values())
        kind = "perception" if cat in MME_PERCEPTION else "cognition" if cat in MME_COGNITION else "other"
        categories[cat] = {
            "kind": kind,
            "acc": acc,
            "acc_plus": acc_plus,
            "score": (acc + acc_plus) * 100,
            "images": len(images),
            "questions": len(answers),
        }
    perception = sum(c["score"] for c in categories.values() if c["kind"] == "perception")
    cognition = sum(c["score"] for c in categories.values() if c["kind"] == "cognition")
    n_scored = sum(c["kind"] != "other" for c in categories.values())
    return {
        "perception": perception,
        "cognition": cognition,
        "total": perception + cognition,
        # share of the maximum over the categories present, comparable across subsets
        "total_pct": (perception + cognition) / (200 * n_scored) * 100 if n_scored else None,
        "categories": categories,
        "unpaired_images": unpaired,
    }


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
            path = image_file(row["image"], ctx.media_out / "mme", safe_name(str(Path(qid).with_suffix(""))))
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
                extra={"question_id": qid, "source_row": idx},
            )
        )
    return items


def _mme_pairs(rng: random.Random, category: str) -> tuple[Image.Image, list[tuple[str, str]]]:
    """(image, [(question, "Yes"), (question, "No")]) for one MME image of ``category``."""
    colours = list(COLOURS)
    if category == "existence":
        objs = [(rng.choice(colours), rng.choice(SHAPES)) for _ in range(2)]
        absent = next((c, s) for c in colours for s in SHAPES if (c, s) not in objs and c not in {o[0] for o in objs})
        img = draw_objects(objs, 112, rng)
        qs = [f"Is there a {objs[0][0]} {objs[0][1]} in this image?", f"Is there a {absent[0]} {absent[1]} in this image?"]
    elif category == "count":
        shape, n = rng.choice(SHAPES), rng.randint(1, 4)
        img = draw_objects([(rng.choice(colours), shape) for _ in range(n)], 112, rng)
        qs = [f"Are there {n} {shape}s in this image?", f"Are there {n + 1} {shape}s in this image?"]
    elif category == "color":
        colour, shape = rng.choice(colours), rng.choice(SHAPES)
        other = rng.choice([c for c in colours if c != colour])
        img = draw_objects([(colour, shape)], 112, rng)
        qs = [f"Is the {shape} in the image {colour}?", f"Is the {shape} in the image {other}?"]
    elif category == "position":
        a, b = rng.sample([(c, s) for c in colours for s in SHAPES], 2)
        img = Image.new("RGB", (112, 112), (245, 245, 240))
        left, right = draw_objects([a], 56, rng), draw_objects([b], 56, rng)
        img.paste(left.crop((0, 0, 56, 56)), (0, 28))
        img.paste(right.crop((0, 0, 56, 56)), (56, 28))
        an, bn = f"{a[0]} {a[1]}", f"{b[0]} {b[1]}"
        qs = [f"Is the {an} on the left of the {bn}?", f"Is the {bn} on the left of the {an}?"]
    elif category == "numerical_calculation":
        x, y = rng.randint(2, 19), rng.randint(2, 19)
        img = text_image([f"{x} + {y} = ?"])
        qs = [
            f"Is the answer to the arithmetic question in the image {x + y}?",
            f"Is the answer to the arithmetic question in the image {x + y + rng.randint(1, 3)}?",
        ]
    elif category == "code_reasoning":
        x, y = rng.randint(2, 9), rng.randint(2, 9)
        img = text_image([f"x = {x}", f"print(x * {y})"])
        qs = [
            f"The image shows a python code. Is the output of the code '{x * y}'?",
            f"The image shows a python code. Is the output of the code '{x * y + 1}'?",
        ]
    else:
        raise ValueError(category)
    return img, [(qs[0] + " Please answer yes or no.", "Yes"), (qs[1] + " Please answer yes or no.", "No")]


def generate_sample(root: Path, options: FetchOptions, seed: int) -> None:
    """lmms-lab-encoder/MME: ``data/test-00000-of-00001.parquet`` (question_id, image, question, answer,
    category); two questions per image, one Yes and one No, as MME pairs them; four
    perception and two cognition categories."""
    import datasets

    rng = random.Random(f"mme:{seed}")
    rows = []
    for category in ("existence", "count", "color", "position", "numerical_calculation", "code_reasoning"):
        for i in range(2):
            img, pairs = _mme_pairs(rng, category)
            qid = f"{category}/{i:04d}.png"
            cell = {"bytes": image_bytes(img, "PNG"), "path": f"{i:04d}.png"}
            for q, a in pairs:
                rows.append({"question_id": qid, "image": cell, "question": q, "answer": a, "category": category})
    rows.append({**rows[0], "question": "Is this a test? Please answer yes or no.", "answer": "Unknown"})
    features = {
        "question_id": datasets.Value("string"),
        "image": datasets.Image(),
        "question": datasets.Value("string"),
        "answer": datasets.Value("string"),
        "category": datasets.Value("string"),
    }
    write_parquet(rows, features, root / "data" / "test-00000-of-00001.parquet")


class MME(Benchmark):
    def load(self, ctx: LoadContext) -> list[EvalItem]:
        return load_mme(ctx)

    def generate(self, root: Path, options: FetchOptions, seed: int) -> None:
        generate_sample(root, options, seed)

    def extra_summary(self, rows: Sequence[Row], threshold: float) -> dict[str, Any]:
        return {"mme": mme_scores(rows)}

    def metadata(self, summary: Mapping[str, Any]) -> dict[str, Any]:
        scores = summary["mme"]
        categories = [
            {
                "category": c,
                "kind": v["kind"],
                "acc": round(100 * v["acc"], 1),
                "acc+": round(100 * v["acc_plus"], 1),
                "score": round(v["score"], 1),
            }
            for c, v in scores["categories"].items()
        ]
        return {
            "mme_perception": round(scores["perception"], 2),
            "mme_cognition": round(scores["cognition"], 2),
            "mme_categories": Markdown(markdown_table(categories)),
        }

    def cells(self, summary: Mapping[str, Any]) -> dict[str, Any]:
        scores = summary.get("mme")
        if not scores:
            return {}
        return {
            "mme_perception": round(scores["perception"], 1),
            "mme_cognition": round(scores["cognition"], 1),
            "mme_pct": None if scores.get("total_pct") is None else round(scores["total_pct"], 1),
        }

    def cell_stats(self, summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """Maximum and chance of the categories evaluated (the full set's are 2000 and 800)."""
        scores = summary.get("mme")
        if not scores:
            return {}
        out = {}
        for kind, key in (("perception", "mme_perception"), ("cognition", "mme_cognition")):
            cats = [c for c in scores["categories"].values() if c["kind"] == kind]
            out[key] = {
                "n": sum(c["questions"] for c in cats),
                "max": MME_CATEGORY_MAX * len(cats),
                "chance": MME_CATEGORY_CHANCE * len(cats),
            }
        scored = [c for c in scores["categories"].values() if c["kind"] != "other"]
        out["mme_pct"] = {"n": sum(c["questions"] for c in scored), "chance": 100 * MME_CATEGORY_CHANCE / MME_CATEGORY_MAX}
        return out

    def lmms_cells(self, tasks) -> dict[str, Any]:
        if "mme" not in tasks:
            return {}
        perception = lmms_metric(tasks["mme"], "mme_percetion_score")  # lmms-eval's own spelling
        if perception is None:
            perception = lmms_metric(tasks["mme"], "mme_perception_score")
        cognition = lmms_metric(tasks["mme"], "mme_cognition_score")
        out = {"mme_perception": perception, "mme_cognition": cognition}
        if perception is not None and cognition is not None:
            out["mme_pct"] = (perception + cognition) / MME_FULL_MAX * 100
        return out


BENCHMARK = MME(
    name="mme",
    title="MME",
    hub_id="lmms-lab-encoder/MME",  # lmms-eval tasks/mme/mme.yaml
    kind="image",
    order=40,
    split_label="category",
    paper="GIRAFFE Table 6 (MME perception / cognition)",
    short_context=True,
    columns=(
        Column("mme_perception", "MME perception (score / max)", kind=SCORE,
               description="sum over the perception categories evaluated of acc + acc+ (200 per category; 2000 on the full set)"),
        Column("mme_cognition", "MME cognition (score / max)", kind=SCORE,
               description="sum over the cognition categories evaluated of acc + acc+ (200 per category; 800 on the full set)"),
        Column("mme_pct", "MME total (% of max)", kind=PCT,
               description="perception + cognition as a share of the maximum over the categories evaluated (chance 37.5%)"),
    ),
    regression_metric="mme_pct",
    lmms_tasks=("mme",),
    lmms_local=(LmmsLocalTask("mme", "mme/mme.yaml", "test", "data/test-*.parquet"),),
    base_metadata_keys=("mme_perception", "mme_cognition"),
)
