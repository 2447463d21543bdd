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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from assets.sources.embedded.media import COLOURS

VH_DIR = "single_needle/VHs_large"
PUBLISHED_COUNTS: tuple[int, ...] = (1, 2, 3, 5, 10, 20, 50, 100, 500, 1000, 10000)
PROMPT_PREFIX = "You are given a set of images. Please answer the following question in Yes or No: "

SHAPES = ("circle", "square", "triangle")
ANCHOR_COLOURS = ("red", "purple")
OTHER_COLOURS = ("green", "blue", "yellow", "orange")
BACKGROUNDS = ((245, 245, 240), (232, 236, 242), (238, 242, 232), (242, 236, 232))


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


# ----------------------------------------------------------------------------- drawing


def draw_objects(objects: Sequence[tuple[str, str]], size: int, rng: random.Random) -> Image.Image:
    """``(colour, shape)`` objects, each alone in one cell of a 2x2 grid (at most 4)."""
    if len(objects) > 4:
        raise ValueError("at most 4 objects fit the 2x2 layout")
    img = Image.new("RGB", (size, size), rng.choice(BACKGROUNDS))
    draw = ImageDraw.Draw(img)
    cell = size // 2
    cells = [(0, 0), (1, 0), (0, 1), (1, 1)]
    rng.shuffle(cells)
    for (colour, shape), (cx, cy) in zip(objects, cells):
        s = rng.randint(int(cell * 0.6), int(cell * 0.85))
        x = cx * cell + rng.randint(0, cell - s)
        y = cy * cell + rng.randint(0, cell - s)
        fill = COLOURS[colour]
        if shape == "circle":
            draw.ellipse((x, y, x + s - 1, y + s - 1), fill=fill)
        elif shape == "square":
            draw.rectangle((x, y, x + s - 1, y + s - 1), fill=fill)
        else:
            draw.polygon([(x + s // 2, y), (x, y + s - 1), (x + s - 1, y + s - 1)], fill=fill)
    return img


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
