"""Visual Haystack (Wu et al., 2024) single needle: the published files, and a real needle task
generated offline in the same format.

Published layout (hub ``tsunghanwu/visual_haystacks``, checked against its dataset card and
the ``visual-haystacks/vhs_benchmark`` toolkit): ``single_needle/VHs_large/visual_haystack_<K>.json``
for K in oracle (1 image), 2, 3, 5, 10, 20, 50, 100, 500, 1000, 10000; each file is a JSON list
of ``{"pos_image": [path], "neg_image": [K-1 paths], "conversations": [{"from": "human",
"value": question}, {"from": "gpt", "value": "yes"|"no"}]}``; image paths are relative to the
image root (COCO 2017, which the dataset card says to download separately). The toolkit's
prompt is "You are given a set of images. Please answer the following question in Yes or No: "
followed by the question, with the needle inserted among the distractors at a chosen position.

Image counts that have no file of their own (25, 150, ...) are **subsampled** from the smallest
larger file: the needle is kept and N-1 of its distractors are drawn (seeded), so the question
and answer stay valid. Counts come from ``sizes``; ``items_per_size`` entries per count are
taken balanced between yes and no.

The embedded generator draws that task with PIL: every image holds coloured shapes in separate
cells; the **anchor** (a red or purple shape) appears only in the needle image, never in a
distractor; the **target** (a green/blue/yellow/orange shape) is in the needle when the answer
is yes and absent from it when the answer is no, while distractors may hold the target (so the
question cannot be answered without finding the anchor's image). Colours are exact PNG fills, so
tests can verify anchor and target from the pixels alone.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import pydantic
from PIL import Image

from assets.contract.markdown import PLOT_WIDE, Markdown, figure_png, markdown_table, png_markdown, pyplot
from eval.benchmarks.base import EFFECTIVE, PCT, Benchmark, Column, Plot
from eval.embedded import (
    SHAPES,
    draw_objects,
)
from eval.formats import (
    FetchOptions,
    LoadContext,
)
from eval.items import YES_NO, EvalItem
from eval.scoring import Row, effective_length, haystack_curve, pct_stats, wilson_interval

VH_DIR = "single_needle/VHs_large"


PUBLISHED_COUNTS: tuple[int, ...] = (1, 2, 3, 5, 10, 20, 50, 100, 500, 1000, 10000)


PROMPT_PREFIX = "You are given a set of images. Please answer the following question in Yes or No: "


ANCHOR_COLOURS = ("red", "purple")


OTHER_COLOURS = ("green", "blue", "yellow", "orange")


def file_key(count: int) -> str:
    return "oracle" if count == 1 else str(count)


def file_path(count: int) -> str:
    return f"{VH_DIR}/visual_haystack_{file_key(count)}.json"


def source_count(n: int) -> int:
    """The published count whose file serves ``n`` images (itself, or the next larger one)."""
    if n < 1:
        raise ValueError(f"a haystack needs at least 1 image, got {n}")
    for c in PUBLISHED_COUNTS:
        if c >= n:
            return c
    raise ValueError(f"{n} images is more than the largest published haystack ({PUBLISHED_COUNTS[-1]})")


def named(obj: tuple[str, str]) -> str:
    """``("orange", "circle")`` -> "an orange circle"."""
    text = f"{obj[0]} {obj[1]}"
    return ("an " if text[0] in "aeiou" else "a ") + text


def question(anchor: tuple[str, str], target: tuple[str, str]) -> str:
    """``(colour, shape)`` pairs -> the single-needle question."""
    return f"For the image with {named(anchor)}, is there {named(target)}?"


@dataclass(frozen=True)
class NeedleEntry:
    anchor: tuple[str, str]
    target: tuple[str, str]
    answer: str
    needle: str
    distractors: list[str]

    def to_json(self) -> dict:
        return {
            "pos_image": [self.needle],
            "neg_image": list(self.distractors),
            "conversations": [
                {"from": "human", "value": question(self.anchor, self.target)},
                {"from": "gpt", "value": self.answer},
            ],
        }


def generate_haystack_sample(
    root: Path,
    sizes: Sequence[int],
    items_per_size: int,
    seed: int = 0,
    image_size: int = 56,
    image_dir: str = "images",
) -> dict[str, list[tuple[str, str]]]:
    """Write the published files serving ``sizes`` (and every smaller published count) under
    ``root`` with PNGs in ``root/image_dir``; returns {image path: objects} (also written to
    ``root/objects.json``, outside the published format, for inspection and tests)."""
    rng = random.Random(f"visual_haystack:{seed}")
    counts = [c for c in PUBLISHED_COUNTS if c <= source_count(max(sizes))]
    objects: dict[str, list[tuple[str, str]]] = {}
    (root / image_dir).mkdir(parents=True, exist_ok=True)

    def save(img: Image.Image, name: str, objs: list[tuple[str, str]]) -> str:
        rel = f"{image_dir}/{name}.png"
        img.save(root / rel)
        objects[rel] = objs
        return rel

    pool = []  # distractors: only non-anchor colours, 1-3 objects, shared like COCO images
    for j in range(max(counts) - 1):
        objs = [(rng.choice(OTHER_COLOURS), rng.choice(SHAPES)) for _ in range(rng.randint(1, 3))]
        pool.append(save(draw_objects(objs, image_size, rng), f"pool_{j:05d}", objs))

    for count in counts:
        entries = []
        for i in range(items_per_size):
            answer = "yes" if i % 2 == 0 else "no"
            anchor = (rng.choice(ANCHOR_COLOURS), rng.choice(SHAPES))
            target = (rng.choice(OTHER_COLOURS), rng.choice(SHAPES))
            fillers = [c for c in OTHER_COLOURS if c != target[0]]
            objs = [anchor] + ([target] if answer == "yes" else [])
            objs += [(rng.choice(fillers), rng.choice(SHAPES)) for _ in range(rng.randint(0, 1))]
            needle = save(draw_objects(objs, image_size, rng), f"needle_{file_key(count)}_{i:03d}", objs)
            distractors = rng.sample(pool, count - 1)
            entries.append(NeedleEntry(anchor, target, answer, needle, distractors).to_json())
        path = root / file_path(count)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(entries, indent=1))
    (root / "objects.json").write_text(json.dumps(objects))
    return objects


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
        count = source_count(n)
        if count not in files:
            files[count] = ctx.rows([file_path(count)])
            for idx, row in enumerate(files[count]):  # reported once per file, whichever counts use it
                answer = _haystack_answer(row)
                if answer not in ("yes", "no"):
                    ctx.reject(f"vh-{file_key(count)}-{idx}", "bad_answer", f"answer {answer!r} is not yes/no", idx, row)
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
            item_id = f"vh-{n}-{file_key(count)}-{idx}"
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
                    prompt=PROMPT_PREFIX + q,
                    answer=answer,
                    answer_type=YES_NO,
                    images=[str(p) for p in paths],
                    split=str(n),
                    extra={
                        "question": q,
                        "needle_index": needle_at,
                        "needle": pos[0],
                        "source_file": file_path(count),
                        "source_row": idx,
                        "subsampled": count != n,
                    },
                )
            )
    return items


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":")
CHANCE = 0.5  # yes/no


def model_style(i: int) -> dict[str, Any]:
    """Marker and line style of the i-th model, so curves that coincide stay distinguishable."""
    return {"marker": MARKERS[i % len(MARKERS)], "linestyle": LINESTYLES[i % len(LINESTYLES)]}


def haystack_plot(
    curves: Mapping[str, Sequence[Mapping[str, Any]]],
    labels: Mapping[str, str],
    threshold: float = 0.6,
    original_length: int | None = None,
) -> bytes:
    """Accuracy (%) vs number of images, one line per model with its 95% Wilson interval,
    the threshold dashed, chance dotted (Figure 4). Models are drawn with their own marker and
    line style and dodged a little along x, so identical curves do not hide each other; the
    number of images whose prompts first exceed the base model's original context is marked."""
    fig, ax = pyplot().subplots(figsize=PLOT_WIDE)
    k = len(curves)
    beyond: int | None = None
    for i, (model, points) in enumerate(curves.items()):
        dodge = 1.0 + 0.035 * (i - (k - 1) / 2)
        xs = [p["n_images"] * dodge for p in points]
        ys = [100 * p["accuracy"] for p in points]
        lo, hi = [], []
        for p, y in zip(points, ys):
            ci = wilson_interval(int(p.get("correct", round(p["accuracy"] * p["n"]))), int(p["n"]))
            lo.append(y - 100 * ci[0] if ci else 0.0)
            hi.append(100 * ci[1] - y if ci else 0.0)
        ax.errorbar(xs, ys, yerr=[lo, hi], capsize=2, elinewidth=0.7, markersize=4, label=labels.get(model, model), **model_style(i))
        if original_length and beyond is None:
            beyond = next((p["n_images"] for p in points if (p.get("mean_tokens") or 0) > original_length), None)
    ax.axhline(100 * threshold, color="grey", linestyle="--", linewidth=1, label=f"{threshold:.0%} (effective length)")
    ax.axhline(100 * CHANCE, color="black", linestyle=":", linewidth=1, label=f"chance ({CHANCE:.0%})")
    if beyond is not None:
        ax.axvline(beyond, color="tab:red", linewidth=0.8, alpha=0.6, label=f"prompts > original context ({original_length} tokens)")
    ns = sorted({p["n_images"] for points in curves.values() for p in points})
    ax.set_xscale("log")
    if ns:
        ax.set_xticks(ns)
        ax.set_xticklabels([str(n) for n in ns], fontsize=7)
        ax.minorticks_off()
    ax.set_xlabel("number of images")
    ax.set_ylabel("accuracy (%, 95% interval)")
    ax.set_ylim(-2, 102)
    ax.set_title("Visual Haystack single needle")
    ax.legend(fontsize=9, loc="lower left")
    return figure_png(fig)


def effective_text(summary: Mapping[str, Any]) -> str:
    """The effective length in words: a number, or where the curve fails."""
    eff = summary.get("effective_length") or {}
    curve = summary.get("curve") or []
    threshold = f"{eff.get('threshold', 0.6):.0%}"
    if eff.get("n_images") is not None:
        tokens = "" if eff.get("tokens") is None else f" (~{round(eff['tokens'])} tokens)"
        return f"{eff['n_images']} image{'' if eff['n_images'] == 1 else 's'}{tokens}"
    if not curve:
        return "not evaluated"
    ns = [p["n_images"] for p in curve]
    if eff.get("last_passing_n") is None:
        return f"below {threshold} at every N ({min(ns)}-{max(ns)})"
    return f"below {threshold} at N={min(ns)} (passes at N={eff['last_passing_n']})"


EMBEDDED_ITEMS_PER_SIZE, HUB_ITEMS_PER_SIZE = 8, 100_000  # hub: as many as each file holds


class HaystackOptions(pydantic.BaseModel):
    """What the Visual Haystack asset lets a user choose (its Dagster config is built from this)."""

    haystack_sizes: list[int] = pydantic.Field(
        default=[1, 2, 3, 5, 10, 25, 50, 100, 150],
        description="Numbers of images (paper Figure 4: 1-150); counts without a published file are subsampled.",
    )
    items_per_size: Optional[int] = pydantic.Field(
        default=None,
        description="Items per count, balanced yes/no; None: every entry of the file on the hub (100 per count), "
        "8 on the embedded sample (four yes, four no: a 95% interval of about +-30 points per N, kept cheap).",
    )
    image_size: int = pydantic.Field(
        default=56, description="Embedded sample only: side of the drawn images (56 px = 4 visual tokens)."
    )
    image_root: Optional[str] = pydantic.Field(
        default=None, description="Hub mode: the folder the files' image paths are relative to (COCO 2017, see the dataset card)."
    )

    def fetch_options(self, mode: str) -> dict[str, Any]:
        per_size = self.items_per_size or (EMBEDDED_ITEMS_PER_SIZE if mode == "embedded" else HUB_ITEMS_PER_SIZE)
        return {
            "haystack_sizes": tuple(self.haystack_sizes),
            "items_per_size": per_size,
            "image_size": self.image_size,
            "image_root": self.image_root,
        }


class VisualHaystack(Benchmark):
    def load(self, ctx: LoadContext) -> list[EvalItem]:
        return load_visual_haystack(ctx)

    def generate(self, root: Path, options: FetchOptions, seed: int) -> None:
        """tsunghanwu/visual_haystacks ``single_needle/VHs_large`` files with drawn images
        standing for COCO."""
        generate_haystack_sample(root, options.haystack_sizes, options.items_per_size, seed, options.image_size)

    def extra_summary(self, rows: Sequence[Row], threshold: float) -> dict[str, Any]:
        curve = haystack_curve(rows)
        return {"curve": [asdict(p) for p in curve], "effective_length": effective_length(curve, threshold).to_dict()}

    def metadata(self, summary: Mapping[str, Any]) -> dict[str, Any]:
        eff = summary["effective_length"]
        curve_table = markdown_table(
            [
                {
                    "images": p["n_images"],
                    "accuracy (%)": round(100 * p["accuracy"], 1),
                    "items": p["n"],
                    "mean prompt tokens": p["mean_tokens"],
                }
                for p in summary["curve"]
            ]
        )
        png = haystack_plot({summary["model"]: summary["curve"]}, {}, eff["threshold"], summary.get("original_length"))
        return {
            "effective_length_images": eff["n_images"],
            "effective_length_tokens": eff["tokens"],
            "last_passing_images": eff["last_passing_n"],
            "accuracy_by_images": Markdown(curve_table),
            "haystack_curve": Markdown(png_markdown(png, "Visual Haystack")),
        }

    def cells(self, summary: Mapping[str, Any]) -> dict[str, Any]:
        eff = summary.get("effective_length") or {}
        return {
            "vh_effective_images": eff.get("n_images"),
            "vh_effective_tokens": None if eff.get("tokens") is None else round(eff["tokens"]),
            "vh_last_passing_images": eff.get("last_passing_n"),
            "vh_accuracy": None if summary.get("accuracy") is None else round(100 * summary["accuracy"], 1),
        }

    def cell_stats(self, summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        return {"vh_effective_images": {"text": effective_text(summary)}, "vh_accuracy": pct_stats(summary)}

    def plots(self, results, rows, labels, threshold, context=None) -> list[Plot]:
        curves = {m: s[self.name]["curve"] for m, s in results.items() if self.name in s}
        png = haystack_plot(curves, {m: f"{m} ({labels[m]})" for m in curves}, threshold, (context or {}).get("original_length"))
        return [("visual_haystack", "Visual Haystack accuracy vs number of images", png)]

    def tables(self, rows) -> list[tuple[str, str]]:
        native = [r for r in rows if r["source"] == "native"]
        table = [
            {
                "model": r["model"],
                "method": r["method"],
                "effective length": (r.get("stats") or {}).get("vh_effective_images", {}).get("text", "–"),
                "images": r["vh_effective_images"],
                "tokens": r["vh_effective_tokens"],
            }
            for r in native
        ]
        return [("effective_length", markdown_table(table))]


BENCHMARK = VisualHaystack(
    name="visual_haystack",
    title="Visual Haystack (single needle)",
    hub_id="tsunghanwu/visual_haystacks",
    kind="multi_image",
    order=10,
    split_label="images",
    paper="GIRAFFE 3.1, Figure 4: accuracy by number of images, effective length at 60%",
    options=HaystackOptions,
    columns=(
        Column("vh_effective_images", "Visual Haystack effective length", kind=EFFECTIVE,
               description="largest number of images N with accuracy >= 60% at N and at every smaller N evaluated, "
               "with that N's mean prompt tokens (GIRAFFE 3.1; chance is 50%)"),
        Column("vh_accuracy", "Visual Haystack accuracy, all N (%)", kind=PCT, description="yes/no accuracy over every N (chance 50%)"),
        Column("vh_effective_tokens", "Visual Haystack effective length (tokens)", in_table=False),
        Column("vh_last_passing_images", "Visual Haystack largest passing N", in_table=False),
    ),
    base_metadata_keys=("haystack_curve", "accuracy_by_images", "effective_length_images", "effective_length_tokens"),
)
