"""The source registry: every ETVLM source of the paper's Table 7, one entry each.

An entry says where the source lives on the hub (repo, data files), how its media are
fetched, which adapter maps its published schema to the conversation contract, and which
generator writes its embedded sample. Adding a source is adding one ``SourceSpec`` here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assets.sources import adapters
from assets.sources.adapters import Adapter
from assets.sources.embedded import samples


@dataclass(frozen=True)
class MediaSpec:
    """Where a source's media live and how they arrive.

    ``patterns`` are ``allow_patterns`` for ``snapshot_download`` of ``repo_id`` (the data
    repo when None); ``archives`` are glob patterns of downloaded archives to unpack in
    place; ``roots`` are the folders (relative to the snapshot) that row paths resolve
    against. ``kind`` is ``files``, ``inline`` (bytes/base64 inside the rows) or ``none``.
    """

    kind: str = "none"
    repo_id: str | None = None
    patterns: tuple[str, ...] = ()
    archives: tuple[str, ...] = ()
    roots: tuple[str, ...] = ("",)
    notes: str = ""


@dataclass(frozen=True)
class SourceSpec:
    """One source. Registry entries have an embedded ``sample``; declared datasets
    (``assets.sources.declared``) have none, and ``files_root`` when their files are local
    (read-only inputs, read in every mode)."""

    name: str
    category: str
    task: str
    hub_id: str
    data_files: tuple[str, ...]
    adapter: Adapter
    sample: Callable[[Path, int], None] | None
    media: MediaSpec = field(default_factory=MediaSpec)
    split: str = "train"
    group_key: Callable[[dict[str, Any]], str] | None = None
    group_size: int = 1
    license: str = ""
    notes: str = ""
    origin: str = "registry"  # registry | declared
    files_root: str | None = None
    columns: Mapping[str, str] = field(default_factory=dict)
    """What the published columns mean (the raw asset's column schema); a column not listed
    is one the adapter does not read."""

    def loader(self) -> str:
        """The ``datasets`` call that reads the rows (before the record-by-record fallback)."""
        if self.files_root is None:
            return f"datasets.load_dataset({self.hub_id!r}, data_files={list(self.data_files)!r})"
        kinds = {Path(f).suffix.lower().lstrip(".") for f in self.data_files}
        builder = "json" if kinds <= {"json", "jsonl", "ndjson"} else "/".join(sorted(kinds))
        return f"datasets.load_dataset({builder!r}, data_files={list(self.data_files)!r})"

    def column_description(self, name: str) -> str:
        return self.columns.get(name) or "published column, not read by the adapter"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "category": self.category,
            "task": self.task,
            "hub_id": self.hub_id,
            "data_files": list(self.data_files),
            "split": self.split,
            "loader": self.loader(),
            "adapter": f"{self.adapter.__module__}.{self.adapter.__name__}",
            "media": {
                "kind": self.media.kind,
                "repo_id": self.media.repo_id or (self.hub_id if self.media.patterns else None),
                "patterns": list(self.media.patterns),
                "archives": list(self.media.archives),
                "notes": self.media.notes,
            },
            "license": self.license,
            "notes": self.notes,
            "origin": self.origin,
            **({"files_root": self.files_root} if self.files_root else {}),
        }


# Published columns shared by several sources (LLaVA-style conversations, video paths, ...).
LLAVA_TURNS = "turns [{from: human|gpt, value}]; <image>/<video> placeholders mark where the media go"
ROLE_TURNS = "turns [{role: user|assistant|system, content}]"
VIDEO_PATH = "video file, relative to the media root"
ROW_ID = "the record's id in the published data"

SOURCES: tuple[SourceSpec, ...] = (
    SourceSpec(
        name="longalign_10k",
        category="long_text",
        task="Long context instructions",
        hub_id="THUDM/LongAlign-10k",
        data_files=("long.jsonl",),
        adapter=adapters.longalign,
        sample=samples.longalign,
        license="Apache-2.0",
        notes="10K rows of 8K-64K-token instructions; the org is also published as zai-org.",
        columns={
            "messages": ROLE_TURNS,
            "id": ROW_ID,
            "length": "token length the publisher measured",
            "dataset": "the collection the document comes from",
        },
    ),
    SourceSpec(
        name="longalpaca",
        category="long_text",
        task="Long context instructions",
        hub_id="Yukang/LongAlpaca-12k",
        data_files=("LongAlpaca-12k.json",),
        adapter=adapters.longalpaca,
        sample=samples.longalpaca,
        license="Apache-2.0 (papers and books, see card)",
        notes="One JSON array; 'instruction' holds document and question.",
        columns={
            "instruction": "the long document followed by the question",
            "output": "the answer (the assistant turn)",
            "input": "extra input, usually empty",
            "file": "the source paper or book file",
        },
    ),
    SourceSpec(
        name="llava_instruct",
        category="short_image",
        task="Short visual instruction data",
        hub_id="liuhaotian/LLaVA-Instruct-150K",
        data_files=("llava_instruct_150k.json",),
        adapter=adapters.llava_conversations,
        sample=samples.llava_instruct,
        media=MediaSpec(
            kind="files",
            roots=("coco/train2017",),
            notes="COCO train2017 images are not in the repo: unpack them to <media>/coco/train2017.",
        ),
        license="CC BY-NC 4.0 (data), COCO terms (images)",
        columns={
            "id": ROW_ID,
            "image": "COCO image file name, relative to the media root",
            "conversations": LLAVA_TURNS,
        },
    ),
    SourceSpec(
        name="m3it",
        category="short_image",
        task="Short visual instruction data",
        hub_id="HuggingFaceM4/M3IT",
        data_files=("data/train-*.parquet",),
        adapter=adapters.m3it,
        sample=samples.m3it,
        media=MediaSpec(kind="inline", notes="images inline (Image feature or base64 strings)"),
        license="CC BY 4.0 (varies per task)",
        notes="Parquet export of MMInstruction/M3IT (the original is a loading script with per-task keys).",
        columns={
            "instruction": "the task instruction",
            "inputs": "the task input (the question)",
            "outputs": "the answer",
            "image": "the image: {bytes, path} (a datasets Image) or base64 text",
        },
    ),
    SourceSpec(
        name="mmdu",
        category="interleave",
        task="Image interleave data",
        hub_id="laolao77/MMDU",
        data_files=("mmdu-45k.json",),
        adapter=adapters.llava_conversations,
        sample=samples.mmdu,
        media=MediaSpec(kind="files", patterns=("mmdu-45k_pics.zip",), archives=("mmdu-45k_pics.zip",)),
        license="CC BY-NC 4.0",
        notes="Multi-turn, multi-image; placeholders <image> or <ImageHere>, bound in order.",
        columns={
            "id": ROW_ID,
            "image": "image files, relative to the media root, in placeholder order",
            "conversations": LLAVA_TURNS,
        },
    ),
    SourceSpec(
        name="mantis",
        category="interleave",
        task="Image interleave data",
        hub_id="TIGER-Lab/Mantis-Instruct",
        data_files=("nlvr2/train-*.parquet",),
        adapter=adapters.mantis,
        sample=samples.mantis,
        media=MediaSpec(
            kind="files",
            patterns=("nlvr2/train_images.zip",),
            archives=("nlvr2/train_images.zip",),
            roots=("nlvr2", ""),
        ),
        license="Apache-2.0 (per-subset terms apply)",
        notes="One subset per config (nlvr2 here); change data_files/patterns for others.",
        columns={
            "id": ROW_ID,
            "images": "images [{bytes, path}] in placeholder order",
            "conversation": ROLE_TURNS + "; <image> placeholders",
            "source": "the subset the row comes from",
        },
    ),
    SourceSpec(
        name="arxivqa_interleave",
        category="interleave",
        task="Image interleave data",
        hub_id="MMInstruction/ArxivQA",
        data_files=("arxivqa.jsonl",),
        adapter=adapters.arxivqa_interleave,
        sample=samples.arxivqa,
        media=MediaSpec(kind="files", patterns=("images.tgz",), archives=("images.tgz",)),
        group_key=adapters.arxiv_paper_key,
        group_size=4,
        license="CC BY-SA 4.0",
        notes="Reconstructed interleave (paper Table 7 '*'): up to 4 figure QAs of one paper per dialogue.",
        columns={
            "id": ROW_ID,
            "image": "the figure file, relative to the media root (its name starts with the arXiv id)",
            "question": "the question on the figure",
            "options": "answer options",
            "label": "the correct option",
            "rationale": "the explanation of the answer",
        },
    ),
    SourceSpec(
        name="sharegpt4v",
        category="video",
        task="Video summary",
        hub_id="ShareGPT4Video/ShareGPT4Video",
        data_files=("sharegpt4video_40k.jsonl",),
        adapter=adapters.sharegpt4video,
        sample=samples.sharegpt4video,
        media=MediaSpec(
            kind="files",
            patterns=("zip_folder/panda/panda_videos_1.zip",),
            archives=("zip_folder/**/*.zip",),
            roots=("zip_folder/panda", ""),
        ),
        license="CC BY-NC 4.0",
        notes="Paper cites ShareGPT4V for video summaries; its video-caption release is ShareGPT4Video.",
        columns={
            "video_id": "the video's id",
            "video_path": VIDEO_PATH,
            "zip_folder": "the archive the video is published in",
            "captions": "captions [{idx, content}]: idx -1 is the whole-video summary, others per keyframe",
            "keyframe": "frame indices of the keyframes",
            "timestamp": "start and end time of each keyframe caption, seconds",
        },
    ),
    SourceSpec(
        name="sharegpt4o",
        category="video",
        task="Video QA",
        hub_id="OpenGVLab/ShareGPT-4o",
        data_files=("video_conversations/gpt4o.jsonl",),
        adapter=adapters.llava_video,
        sample=samples.sharegpt4o,
        media=MediaSpec(
            kind="files",
            patterns=("video_conversations/*.tar.gz",),
            archives=("video_conversations/*.tar.gz",),
            roots=("video_conversations/pvideo", "video_conversations"),
            notes="Gated: accept the terms and set HF_TOKEN. Archive names vary; check the repo.",
        ),
        split="train",
        license="CC BY-NC 4.0",
        columns={
            "video": VIDEO_PATH,
            "conversations": LLAVA_TURNS,
        },
    ),
    SourceSpec(
        name="llava_video",
        category="video",
        task="Video QA",
        hub_id="lmms-lab/LLaVA-Video-178K",
        data_files=("0_30_s_academic_v0_1/0_30_s_academic_oe_v0_1_qa_processed.json",),
        adapter=adapters.llava_video,
        sample=samples.llava_video,
        media=MediaSpec(
            kind="files",
            patterns=("0_30_s_academic_v0_1/*.tar.gz",),
            archives=("0_30_s_academic_v0_1/*.tar.gz",),
            roots=("0_30_s_academic_v0_1",),
        ),
        license="Apache-2.0 (videos: source terms)",
        notes="One subset (0-30 s academic, open-ended); '<image>' is the video placeholder.",
        columns={
            "id": ROW_ID,
            "video": VIDEO_PATH,
            "conversations": LLAVA_TURNS,
            "data_source": "the collection the video comes from",
        },
    ),
    SourceSpec(
        name="mlvu",
        category="video",
        task="Video QA (long videos > 5 min)",
        hub_id="MLVU/MVLU",
        data_files=("MLVU/json/1_plotQA.json",),
        adapter=adapters.mlvu,
        sample=samples.mlvu,
        media=MediaSpec(kind="files", patterns=("MLVU/video/1_plotQA/*",), roots=("MLVU/video/1_plotQA",)),
        license="CC BY-NC-SA 4.0",
        notes="Training uses videos longer than 5 minutes; MLVU must stay out of the test set.",
        columns={
            "video": VIDEO_PATH,
            "duration": "length of the video, seconds",
            "question": "the question",
            "candidates": "answer options",
            "answer": "the correct option",
            "question_type": "MLVU task type (plotQA, ...)",
        },
    ),
)

SOURCES_BY_NAME: dict[str, SourceSpec] = {s.name: s for s in SOURCES}


def get_source(name: str) -> SourceSpec:
    try:
        return SOURCES_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown source {name!r}; known: {', '.join(SOURCES_BY_NAME)}") from None
