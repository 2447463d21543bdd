"""One generator per source, writing that source's published layout under a folder.

Every sample holds mostly good rows plus the kinds of bad rows real dumps contain (missing
media, placeholder/media mismatch, empty conversations, unknown roles, malformed fields,
duplicates, special tokens and stray symbols in text), so the quarantine path is exercised
on every run of the demo, not only in unit tests.
"""

from __future__ import annotations

import json
import random
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

from assets.sources.embedded import text as T
from assets.sources.embedded.media import (
    COLOURS,
    caption,
    draw_scene,
    encode_video,
    image_bytes,
    save_image,
    where,
)

SAMPLE_VERSION = 2  # 2: MMDU image paths with the published leading '/'


def _rng(name: str, seed: int) -> random.Random:
    return random.Random(f"{name}:{seed}")


def _write_json(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=1))


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _zip(archive: Path, files: Iterable[Path], base: Path) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for f in files:
            zf.write(f, f.relative_to(base).as_posix())
            f.unlink()


def _tar(archive: Path, files: Iterable[Path], base: Path) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tf:
        for f in files:
            tf.add(f, f.relative_to(base).as_posix())
            f.unlink()


def _scene_qa(rng: random.Random, objects: list, size: tuple[int, int]) -> list[tuple[str, str]]:
    """Question/answer pairs whose answers are true of the drawn scene."""
    colours = sorted({o.colour for o in objects})
    target = rng.choice(objects)
    absent = sorted(set(COLOURS) - set(colours))
    qa = [
        ("How many shapes are in the image?", f"There are {len(objects)} shapes in the image."),
        (f"Where is the {target.name}?", f"The {target.name} is in the {where(target, size)} of the image."),
        ("Which colours appear in the image?", "The colours are " + ", ".join(colours) + "."),
    ]
    if absent:
        qa.append((f"Is there anything {absent[0]} in the image?", f"No, there is nothing {absent[0]} in the image."))
    rng.shuffle(qa)
    return qa


# ----------------------------------------------------------------------------- long text


def longalign(root: Path, seed: int) -> None:
    """THUDM/LongAlign-10k ``long.jsonl``: {dataset, id, length, messages}."""
    rng = _rng("longalign", seed)
    rows = []
    for i, words in enumerate((700, 2_400, 5_200, 9_000, 14_000, 21_000, 30_000, 44_000)):
        doc, q, a = T.long_document_qa(rng, words)
        messages = [
            {"role": "user", "content": f"{doc}\n\n{q}"},
            {"role": "assistant", "content": a},
        ]
        if i == 2:  # a multi-turn row
            _, q2, a2 = T.planted_fact(rng)
            messages += [{"role": "user", "content": f"Another record says: {a2} {q2}"}, {"role": "assistant", "content": a2}]
        if i == 3:  # special tokens leaked from another model's dump: cleaned, not rejected
            messages[0]["content"] = "<|im_start|>" + messages[0]["content"] + "<|im_end|></s>"
        rows.append({"dataset": "longalign", "id": f"longalign-{i}", "length": int(words * 1.3), "messages": messages})
    rows.append({"dataset": "longalign", "id": "bad-empty", "length": 0, "messages": []})
    rows.append({"dataset": "longalign", "id": "bad-role", "length": 10, "messages": [
        {"role": "user", "content": "Summarise the report."}, {"role": "bot", "content": "It is short."}]})
    rows.append({"dataset": "longalign", "id": "bad-unanswered", "length": 10, "messages": [
        {"role": "user", "content": "Who kept the lantern?"}]})
    rows.append(dict(rows[0]))  # exact duplicate of the first row
    _write_jsonl(root / "long.jsonl", rows)


def longalpaca(root: Path, seed: int) -> None:
    """Yukang/LongAlpaca-12k ``LongAlpaca-12k.json``: [{instruction, output, input, file}]."""
    rng = _rng("longalpaca", seed)
    rows = []
    for i, words in enumerate((3_000, 7_000, 12_000, 18_000, 26_000)):
        doc, q, a = T.long_document_qa(rng, words)
        if i == 1:  # scraped text with zero-width and replacement characters
            doc = doc.replace(". ", ".\u200b ", 5).replace(" the ", " the\ufffd ", 3)
        instruction = (
            "Below is a paper. Memorize the paper and answer my question after the paper.\n"
            f" The paper begins. \n{doc}\n Now the paper ends. \n{q}"
        )
        rows.append({"instruction": instruction, "output": a, "input": "", "file": f"paper_{i}.txt"})
    rows.append({"instruction": "Below is a paper. The paper begins. Now the paper ends. What is it about?",
                 "output": None, "input": "", "file": "paper_broken.txt"})
    _write_json(root / "LongAlpaca-12k.json", rows)


# ----------------------------------------------------------------------------- images


def llava_instruct(root: Path, seed: int) -> None:
    """liuhaotian/LLaVA-Instruct-150K: [{id, image, conversations}] + COCO-named JPEGs."""
    rng = _rng("llava_instruct", seed)
    img_dir = root / "coco" / "train2017"
    rows = []
    for i in range(16):
        size = rng.choice(((640, 480), (480, 640), (500, 375), (640, 427)))
        img, objects = draw_scene(rng, size, rng.randint(1, 5))
        image_id = f"{100000 + i * 37:012d}"
        save_image(img.convert("RGB"), img_dir / f"{image_id}.jpg")
        qa = _scene_qa(rng, objects, size)[: rng.randint(1, 3)]
        convs = []
        for j, (q, a) in enumerate(qa):
            convs.append({"from": "human", "value": (f"<image>\n{q}" if j == 0 else q)})
            convs.append({"from": "gpt", "value": a})
        rows.append({"id": image_id, "image": f"{image_id}.jpg", "conversations": convs})
    rows.append({"id": "000000999001", "image": "000000999001.jpg",  # image never downloaded
                 "conversations": [{"from": "human", "value": "<image>\nWhat is shown?"}, {"from": "gpt", "value": "A scene."}]})
    rows.append({"id": rows[0]["id"] + "b", "image": rows[0]["image"],  # two placeholders, one image
                 "conversations": [{"from": "human", "value": "<image>\n<image>\nCompare them."}, {"from": "gpt", "value": "Same."}]})
    rows.append({"id": "000000999002", "image": rows[1]["image"], "conversations": []})
    rows.append({"id": "000000999003", "image": rows[2]["image"],
                 "conversations": [{"from": "human", "value": "<image>\nDescribe it."}, {"from": "bot", "value": "Shapes."}]})
    _write_json(root / "llava_instruct_150k.json", rows)


def m3it(root: Path, seed: int) -> None:
    """HuggingFaceM4/M3IT parquet: {instruction, inputs, outputs, image: {bytes, path}}."""
    rng = _rng("m3it", seed)
    rows = []
    for i in range(12):
        size = rng.choice(((224, 224), (320, 240), (256, 384)))
        img, objects = draw_scene(rng, size, rng.randint(1, 4))
        if i % 2 == 0:
            instruction, inputs, outputs = "Write a short caption for the image.", "", caption(objects, size)
        else:
            q, a = _scene_qa(rng, objects, size)[0]
            instruction, inputs, outputs = "Answer the question about the image.", f"Question: {q}", a
        rows.append({"instruction": instruction, "inputs": inputs, "outputs": outputs,
                     "image": {"bytes": image_bytes(img, "JPEG"), "path": f"m3it_{i}.jpg"}})
    rows.append({"instruction": "Caption the image.", "inputs": "", "outputs": "Nothing.",
                 "image": {"bytes": None, "path": None}})  # image lost in the export
    schema = pa.schema([
        ("instruction", pa.string()), ("inputs", pa.string()), ("outputs", pa.string()),
        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
    ])
    path = root / "data" / "train-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def mmdu(root: Path, seed: int) -> None:
    """laolao77/MMDU ``mmdu-45k.json`` + ``mmdu-45k_pics.zip``: many images, many turns."""
    rng = _rng("mmdu", seed)
    pics = root / "mmdu-45k_pics"
    files, rows = [], []
    for i in range(6):
        n_images = rng.randint(2, 5)
        names, scenes = [], []
        for k in range(n_images):
            size = rng.choice(((512, 384), (384, 512), (448, 448)))
            img, objects = draw_scene(rng, size, rng.randint(1, 4))
            name = f"mmdu45k_{i:04d}_{k}.jpg"
            files.append(save_image(img, pics / name))
            names.append(f"/mmdu-45k_pics/{name}")  # the published json writes a leading "/"
            scenes.append((objects, size))
        placeholder = "<ImageHere>" if i == 4 else "<image>"
        header = "\n".join(f"Image{k + 1}: {placeholder}" for k in range(n_images))
        convs = []
        for turn in range(rng.randint(3, 5)):
            k = rng.randrange(n_images)
            q, a = _scene_qa(rng, *scenes[k])[0]
            detail = T.paragraph(rng, rng.randint(2, 4))
            question = f"In Image{k + 1}: {q}"
            convs.append({"from": "human", "value": f"{header}\n### Questions:\nQ: {question}" if turn == 0 else question})
            convs.append({"from": "gpt", "value": f"{a} {detail}"})
        rows.append({"id": i, "image": names, "conversations": convs})
    rows.append({"id": 99, "image": rows[0]["image"][:1],  # header names two images, one given
                 "conversations": [{"from": "human", "value": "Image1: <image>\nImage2: <image>\nCompare."},
                                   {"from": "gpt", "value": "They differ."}]})
    _write_json(root / "mmdu-45k.json", rows)
    _zip(root / "mmdu-45k_pics.zip", files, root)
    pics.rmdir()


def mantis(root: Path, seed: int) -> None:
    """TIGER-Lab/Mantis-Instruct nlvr2: parquet {id, images: [{bytes, path}], conversation,
    source} + ``nlvr2/train_images.zip``; statements true or false of two drawn images."""
    rng = _rng("mantis", seed)
    staging = root / "nlvr2"
    files, rows = [], []
    for i in range(10):
        pair = []
        for k in range(2):
            img, objects = draw_scene(rng, (400, 300), rng.randint(1, 4))
            name = f"nlvr2_train_{i}_{k}.png"
            files.append(save_image(img, staging / name))
            pair.append((name, objects))
        colour = rng.choice(list(COLOURS))
        total = sum(o.colour == colour for _, objs in pair for o in objs)
        claim = rng.randint(0, 3)
        statement = f"The two images contain {claim} {colour} shapes in total."
        rows.append({
            "id": f"nlvr2_{i}",
            "images": [{"bytes": None, "path": name} for name, _ in pair],
            "conversation": [
                {"role": "user", "content": f"<image><image> Is this statement true or false? {statement}"},
                {"role": "assistant", "content": "True" if total == claim else "False"},
            ],
            "source": "nlvr2",
        })
    rows.append({"id": "nlvr2_bad", "images": rows[0]["images"] + rows[1]["images"][:1], "source": "nlvr2",
                 "conversation": [{"role": "user", "content": "<image><image> Same shapes?"},
                                  {"role": "assistant", "content": "False"}]})
    schema = pa.schema([
        ("id", pa.string()),
        ("images", pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))),
        ("conversation", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("source", pa.string()),
    ])
    (root / "nlvr2").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), root / "nlvr2" / "train-00000-of-00001.parquet")
    _zip(root / "nlvr2" / "train_images.zip", files, staging)


def _bar_chart(rng: random.Random, size: tuple[int, int]) -> tuple[Image.Image, list[tuple[str, int]]]:
    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    names = rng.sample(list(COLOURS), rng.randint(3, 5))
    bars = [(n, rng.randint(10, 100)) for n in names]
    w = size[0] // (len(bars) + 1)
    for k, (name, value) in enumerate(bars):
        x = (k + 0.5) * w
        draw.rectangle((x, size[1] - 20 - value * (size[1] - 40) / 100, x + w * 0.7, size[1] - 20), fill=COLOURS[name])
    draw.line((10, size[1] - 20, size[0] - 10, size[1] - 20), fill=(0, 0, 0), width=2)
    return img, bars


def arxivqa(root: Path, seed: int) -> None:
    """MMInstruction/ArxivQA ``arxivqa.jsonl`` + ``images.tgz``: figure QAs, grouped per paper
    into interleaved dialogues by the source's ``group_key``."""
    rng = _rng("arxivqa", seed)
    files, rows = [], []
    papers = [f"{2300 + k}.{rng.randint(10000, 99999)}" for k in range(6)]
    for p, paper in enumerate(papers):
        for fig in range(5 if p == 0 else 3):
            img, bars = _bar_chart(rng, (480, 320))
            rel = f"images/{paper}_{fig}.jpg"
            files.append(save_image(img, root / rel))
            best = max(bars, key=lambda b: b[1])[0]
            options = [f"{'ABCDE'[k]}. The {n} bar" for k, (n, _) in enumerate(bars)]
            label = "ABCDE"[[n for n, _ in bars].index(best)]
            rows.append({
                "id": f"{paper}_{fig}", "image": rel,
                "question": "Which bar in the figure has the highest value?",
                "options": options, "label": label,
                "rationale": f"The {best} bar rises above all the others in the chart.",
            })
    rows.append({"id": "9999.00001_0", "image": "images/9999.00001_0.jpg", "question": "What does the plot show?",
                 "options": ["A. Growth", "B. Decay"], "label": "A", "rationale": ""})  # figure missing
    _write_jsonl(root / "arxivqa.jsonl", rows)
    _tar(root / "images.tgz", files, root)
    (root / "images").rmdir()


# ----------------------------------------------------------------------------- video

# (seconds, fps, size): covers the fps a 2 fps sampler must handle, including below 2 fps.
_CLIPS = ((6, 30, (320, 240)), (9, 25, (320, 180)), (12, 24, (256, 256)), (5, 29.97, (320, 240)),
          (4, 60, (240, 320)), (20, 30, (320, 240)), (10, 1, (320, 240)), (15, 30, (480, 270)))


def _video_summary(rng: random.Random, seconds: float, hue: int) -> tuple[str, list[str]]:
    segments = [
        f"Seconds {s} to {min(s + 3, seconds):g}: the coloured test pattern keeps moving while the counter advances."
        for s in range(0, int(seconds), 3)
    ]
    summary = (
        f"The video is a {seconds:g}-second test pattern with colour bars tinted by a hue shift of {hue} degrees. "
        + T.paragraph(rng, 2)
    )
    return summary, segments


def sharegpt4video(root: Path, seed: int) -> None:
    """ShareGPT4Video/ShareGPT4Video ``sharegpt4video_40k.jsonl`` + zipped videos."""
    rng = _rng("sharegpt4video", seed)
    folder = root / "zip_folder" / "panda"
    files, rows = [], []
    for i, (seconds, fps, size) in enumerate(_CLIPS[:5]):
        hue = rng.randint(0, 359)
        name = f"panda_{i:05d}.mp4"
        files.append(encode_video(folder / name, seconds=seconds, fps=fps, size=size, pattern=i, hue=hue))
        summary, segments = _video_summary(rng, seconds, hue)
        captions = [{"idx": str(k), "content": s} for k, s in enumerate(segments)] + [{"idx": "-1", "content": summary}]
        rows.append({"video_id": f"panda_{i:05d}", "video_path": name, "zip_folder": "panda_videos_1.zip",
                     "captions": captions, "keyframe": list(range(0, int(seconds * fps), int(fps * 3) or 1)),
                     "timestamp": [[float(s), float(min(s + 3, seconds))] for s in range(0, int(seconds), 3)]})
    rows.append({"video_id": "panda_bad", "video_path": "panda_00000.mp4", "zip_folder": "panda_videos_1.zip",
                 "captions": [{"idx": "0", "content": "Only a segment caption."}], "keyframe": [0],
                 "timestamp": [[0.0, 3.0]]})  # no whole-video caption
    _write_jsonl(root / "sharegpt4video_40k.jsonl", rows)
    _zip(folder / "panda_videos_1.zip", files, folder)


def sharegpt4o(root: Path, seed: int) -> None:
    """OpenGVLab/ShareGPT-4o ``video_conversations/gpt4o.jsonl`` + a tar of the videos."""
    rng = _rng("sharegpt4o", seed)
    base = root / "video_conversations"
    files, rows = [], []
    for i, (seconds, fps, size) in enumerate(_CLIPS[3:7]):
        hue = rng.randint(0, 359)
        name = f"4o_{i:04d}.mp4"
        files.append(encode_video(base / "pvideo" / name, seconds=seconds, fps=fps, size=size, pattern=i + 1, hue=hue))
        summary, _ = _video_summary(rng, seconds, hue)
        rows.append({"video": name, "conversations": [
            {"from": "human", "value": "<video>\nPlease describe the video in detail."},
            {"from": "gpt", "value": summary},
        ]})
    _write_jsonl(base / "gpt4o.jsonl", rows)
    _tar(base / "pvideo.tar.gz", files, base)
    (base / "pvideo").rmdir()


def llava_video(root: Path, seed: int) -> None:
    """lmms-lab/LLaVA-Video-178K (0_30_s_academic_v0_1, open-ended QA) + tar.gz of videos."""
    rng = _rng("llava_video", seed)
    subset = root / "0_30_s_academic_v0_1"
    files, rows = [], []
    for i, (seconds, fps, size) in enumerate(_CLIPS):
        vid = f"{rng.randint(0, 36**5):05X}"[:5]
        rel = f"academic_source/Charades/{vid}.mp4"
        hue = rng.randint(0, 359)
        files.append(encode_video(subset / rel, seconds=seconds, fps=fps, size=size, pattern=i, hue=hue))
        convs = [
            {"from": "human", "value": "<image>\nHow long is the video, approximately?"},
            {"from": "gpt", "value": f"The video lasts about {seconds:g} seconds."},
            {"from": "human", "value": "Is the picture taller than it is wide?"},
            {"from": "gpt", "value": "Yes, it is in portrait orientation." if size[1] > size[0] else "No, it is not taller than it is wide."},
        ]
        rows.append({"id": vid, "conversations": convs, "data_source": "0_30_s_academic_v0_1", "video": rel})
    rows.append({"id": "MISSN", "data_source": "0_30_s_academic_v0_1", "video": "academic_source/Charades/MISSN.mp4",
                 "conversations": [{"from": "human", "value": "<image>\nWhat happens?"}, {"from": "gpt", "value": "Nothing."}]})
    _write_json(subset / "0_30_s_academic_oe_v0_1_qa_processed.json", rows)
    _tar(subset / "0_30_s_academic_v0_1_videos_1.tar.gz", files, subset)
    for d in sorted((subset / "academic_source").rglob("*"), reverse=True):
        d.rmdir()
    (subset / "academic_source").rmdir()


def mlvu(root: Path, seed: int) -> None:
    """MLVU/MVLU ``MLVU/json/1_plotQA.json`` + ``MLVU/video/1_plotQA/*.mp4`` (> 5 min)."""
    rng = _rng("mlvu", seed)
    video_dir = root / "MLVU" / "video" / "1_plotQA"
    rows = []
    for i, seconds in enumerate((310, 370)):
        hue = rng.randint(0, 359)
        name = f"movie101_{60 + i}.mp4"
        encode_video(video_dir / name, seconds=seconds, fps=10, size=(160, 120), pattern=i, hue=hue)
        colours = rng.sample(list(COLOURS), 4)
        rows.append({"video": name, "duration": seconds, "question": "What colour tint dominates the test pattern?",
                     "candidates": colours, "answer": colours[0], "question_type": "plotQA"})
        rows.append({"video": name, "duration": seconds, "question": "How long is the video?",
                     "candidates": [f"{seconds // 60} minutes", "30 seconds", "2 hours", "10 seconds"],
                     "answer": f"{seconds // 60} minutes", "question_type": "plotQA"})
    rows.append({"video": "movie101_60.mp4", "duration": 310, "question": "Who speaks first?",
                 "candidates": ["The doctor", "The pilot"], "answer": "The teacher", "question_type": "plotQA"})
    _write_json(root / "MLVU" / "json" / "1_plotQA.json", rows)
