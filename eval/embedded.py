"""Local samples of the benchmarks in their published layouts (the embedded default).

No hub is reachable from the machines that build and test this project, so each benchmark's
sample is generated here, seeded and deterministic, with real media (PIL images, H.264 videos
from the ffmpeg binary of ``imageio-ffmpeg`` through ``assets.sources.embedded.media.encode_video``).
Tables are written with ``datasets`` and the hub's feature types (``Image`` columns,
``Sequence`` options), archives are named and laid out as on the hub, so
``eval.formats`` reads these folders with exactly the calls it uses on the hub. Questions are
true of the generated media. Each sample also holds a bad row of the kind real dumps contain
(a missing video, an answer outside the options, an answer that is not yes/no); the loader
quarantines it with its reason.
"""

from __future__ import annotations

import json
import random
import string
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from assets.sources.embedded.media import COLOURS, encode_video, image_bytes
from eval.formats import FetchOptions
from eval.haystack import draw_objects, generate_haystack_sample

SHAPES = ("circle", "square", "triangle")
# assets.sources.embedded.media's lavfi patterns, in its order, described as a viewer would
PATTERN_NAMES = (
    "a test card with a moving counter",
    "a test card with a rotating colour wheel",
    "SMPTE HD colour bars",
    "red, green and blue stripes",
)


def _write_parquet(rows: list[dict[str, Any]], features: dict[str, Any], path: Path) -> None:
    import datasets

    path.parent.mkdir(parents=True, exist_ok=True)
    ds = datasets.Dataset.from_list(rows, features=datasets.Features(features))
    ds.to_parquet(str(path))


def _video_id(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits + "-_") for _ in range(11))


def _choices(rng: random.Random, right: str, wrong: Sequence[str], k: int) -> tuple[list[str], int]:
    opts = [right] + rng.sample([w for w in wrong if w != right], k - 1)
    rng.shuffle(opts)
    return opts, opts.index(right)


def _pattern_question(rng: random.Random, pattern: int, k: int = 4) -> tuple[str, list[str], int]:
    opts, right = _choices(rng, PATTERN_NAMES[pattern], PATTERN_NAMES + ("a black screen",), k)
    return "Which kind of picture does the video show?", opts, right


def _duration_question(rng: random.Random, seconds: int, k: int = 4) -> tuple[str, list[str], int]:
    wrong = [f"about {s} seconds" for s in (1, 3 * seconds, 10 * seconds, 60 * seconds)]
    opts, right = _choices(rng, f"about {seconds} seconds", wrong, k)
    return "How long is the video?", opts, right


# ----------------------------------------------------------------------------- VideoMME


def videomme(root: Path, options: FetchOptions, seed: int) -> None:
    """lmms-eval/Video-MME: ``videomme/test-00000-of-00001.parquet`` + ``videos_chunked_01.zip``
    holding ``data/<videoID>.mp4``. Real durations are short < 2 min, medium 4-15 min, long
    30-60 min; the sample keeps the labels with clips of a few seconds (6/12/20 s) so the
    embedded evaluation stays cheap."""
    rng = random.Random(f"videomme:{seed}")
    staging = root / "data"
    files, rows = [], []
    n = 0
    for duration, seconds in (("short", 6), ("medium", 12), ("long", 20)):
        for _ in range(2):
            n += 1
            vid, pattern = _video_id(rng), rng.randrange(len(PATTERN_NAMES))
            files.append(encode_video(staging / f"{vid}.mp4", seconds=seconds, fps=4, size=(128, 96), pattern=pattern, hue=rng.randint(0, 359)))
            for j, (q, opts, right) in enumerate((_pattern_question(rng, pattern), _duration_question(rng, seconds))):
                rows.append({
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
                })
    rows.append({**rows[0], "video_id": "999", "videoID": "MISSINGVID1", "question_id": "999-1"})  # video never shipped
    import datasets

    _write_parquet(
        rows,
        {k: datasets.Value("string") for k in rows[0] if k != "options"} | {"options": datasets.Sequence(datasets.Value("string"))},
        root / "videomme" / "test-00000-of-00001.parquet",
    )
    with zipfile.ZipFile(root / "videos_chunked_01.zip", "w", compression=zipfile.ZIP_STORED) as zf:
        for f in files:
            zf.write(f, f.relative_to(root).as_posix())
            f.unlink()
    staging.rmdir()


# ----------------------------------------------------------------------------- LongVideoBench


def longvideobench(root: Path, options: FetchOptions, seed: int) -> None:
    """longvideobench/LongVideoBench: ``lvb_val.json`` + ``videos.tar.part.aa`` (a split tar of
    ``videos/<video_path>``) + ``subtitles.tar``. Duration groups 15/60/600/3600 s are kept as
    labels on clips of 8-20 s."""
    rng = random.Random(f"longvideobench:{seed}")
    videos, subs, rows = [], [], []
    for group, seconds in ((15, 8), (60, 12), (600, 16), (3600, 20)):
        vid, pattern = _video_id(rng), rng.randrange(len(PATTERN_NAMES))
        videos.append(encode_video(root / "videos" / f"{vid}.mp4", seconds=seconds, fps=4, size=(128, 96), pattern=pattern, hue=rng.randint(0, 359)))
        sub = root / "subtitles" / f"{vid}_en.json"
        sub.parent.mkdir(parents=True, exist_ok=True)
        sub.write_text(json.dumps([{"start": "00:00:00.000", "end": f"00:00:{seconds:02d}.000", "line": "A test pattern is shown."}]))
        subs.append(sub)
        for j, (q, opts, right) in enumerate((_pattern_question(rng, pattern, 5), _duration_question(rng, seconds, 5))):
            rows.append({
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
            })
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


# ----------------------------------------------------------------------------- MME


def _text_image(lines: Sequence[str], size: int = 112) -> Image.Image:
    img = Image.new("RGB", (size, size), (250, 250, 246))
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((8, 12 + 16 * i), line, fill=(20, 20, 20))
    return img


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
        img = _text_image([f"{x} + {y} = ?"])
        qs = [
            f"Is the answer to the arithmetic question in the image {x + y}?",
            f"Is the answer to the arithmetic question in the image {x + y + rng.randint(1, 3)}?",
        ]
    elif category == "code_reasoning":
        x, y = rng.randint(2, 9), rng.randint(2, 9)
        img = _text_image([f"x = {x}", f"print(x * {y})"])
        qs = [
            f"The image shows a python code. Is the output of the code '{x * y}'?",
            f"The image shows a python code. Is the output of the code '{x * y + 1}'?",
        ]
    else:
        raise ValueError(category)
    return img, [(qs[0] + " Please answer yes or no.", "Yes"), (qs[1] + " Please answer yes or no.", "No")]


def mme(root: Path, options: FetchOptions, seed: int) -> None:
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
    _write_parquet(rows, features, root / "data" / "test-00000-of-00001.parquet")


# ----------------------------------------------------------------------------- MMBench

_WHERE = {(0, 0): "top left", (1, 0): "top right", (0, 1): "bottom left", (1, 1): "bottom right"}


def _mmbench_item(rng: random.Random, category: str) -> tuple[Image.Image, str, str, list[str], int]:
    """(image, question, hint, options, index of the right one)."""
    colours = list(COLOURS)
    if category == "attribute_recognition":
        colour, shape = rng.choice(colours), rng.choice(SHAPES)
        img = draw_objects([(colour, shape)], 112, rng)
        opts, right = _choices(rng, colour, colours, rng.choice((3, 4)))
        return img, f"What colour is the {shape}?", "", opts, right
    if category == "object_localization":
        colour, shape = rng.choice(colours), rng.choice(SHAPES)
        cell = rng.choice(list(_WHERE))
        img = Image.new("RGB", (112, 112), (245, 245, 240))
        img.paste(draw_objects([(colour, shape)], 56, rng).crop((0, 0, 56, 56)), (56 * cell[0], 56 * cell[1]))
        opts, right = _choices(rng, _WHERE[cell], list(_WHERE.values()), 4)
        hint = "The image is divided into four equal quarters."
        return img, f"Where is the {colour} {shape} in the image?", hint, opts, right
    if category == "spatial_relationship":
        a, b = rng.sample([(c, s) for c in colours for s in SHAPES], 2)
        img = Image.new("RGB", (112, 112), (245, 245, 240))
        img.paste(draw_objects([a], 56, rng).crop((0, 0, 56, 56)), (0, 28))
        img.paste(draw_objects([b], 56, rng).crop((0, 0, 56, 56)), (56, 28))
        opts, right = _choices(rng, "left", ["left", "right", "above", "below"], 4)
        return img, f"Where is the {a[0]} {a[1]} relative to the {b[0]} {b[1]}?", "", opts, right
    raise ValueError(category)


def mmbench(root: Path, options: FetchOptions, seed: int) -> None:
    """lmms-lab-encoder/MMBench config ``en``: ``en/dev-00000-of-00001.parquet`` (index, question, hint,
    answer, A-D with absent options empty, category, image, source, L2-category, comment,
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
                "index": str(len(rows) + 1000),
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
    rows.append({**rows[0], "index": "9999", "answer": "E"})  # answer letter with no option behind it
    features = {k: datasets.Value("string") for k in rows[0]} | {"image": datasets.Image()}
    _write_parquet(rows, features, root / "en" / "dev-00000-of-00001.parquet")


# ----------------------------------------------------------------------------- Visual Haystack


def visual_haystack(root: Path, options: FetchOptions, seed: int) -> None:
    """tsunghanwu/visual_haystacks ``single_needle/VHs_large`` files with drawn images standing
    for COCO (see ``eval.haystack``)."""
    generate_haystack_sample(root, options.haystack_sizes, options.items_per_size, seed, options.image_size)


GENERATORS = {
    "visual_haystack": visual_haystack,
    "videomme": videomme,
    "longvideobench": longvideobench,
    "mme": mme,
    "mmbench": mmbench,
}
