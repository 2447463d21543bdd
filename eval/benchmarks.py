"""The benchmark registry: one entry per benchmark, as the source registry does for data.

Each :class:`BenchmarkSpec` names the real hub repository (as the current lmms-eval task files
name it; ``GIRAFFE_HUB_IDS=name=org/repo,...`` or the ``hub`` resource's ``hub_ids`` override
any of them in hub mode), the media the hub mode downloads
(``snapshot_download`` patterns) and how its archives unpack, the loader in ``eval.formats``
and the generator of its embedded sample in ``eval.embedded``. Adding a benchmark is one entry
here plus its loader and generator.
"""

from __future__ import annotations

from dataclasses import dataclass

SHORT_CONTEXT = ("mme", "mmbench")


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    title: str
    hub_id: str
    kind: str  # multi_image | video | image
    media_patterns: tuple[str, ...] = ()  # hub mode: files snapshot_download fetches besides the table
    archives: tuple[str, ...] = ()  # unpacked in place (zip / tar)
    split_archives: tuple[tuple[str, str], ...] = ()  # (glob of parts, joined name), joined first
    split_label: str = "split"  # what ``EvalItem.split`` means, for tables and plots
    paper: str = ""

    @property
    def short_context(self) -> bool:
        return self.name in SHORT_CONTEXT


BENCHMARKS: tuple[BenchmarkSpec, ...] = (
    BenchmarkSpec(
        name="visual_haystack",
        title="Visual Haystack (single needle)",
        hub_id="tsunghanwu/visual_haystacks",
        kind="multi_image",
        split_label="images",
        paper="GIRAFFE 3.1, Figure 4: accuracy by number of images, effective length at 60%",
    ),
    BenchmarkSpec(
        name="videomme",
        title="Video-MME",
        hub_id="lmms-eval/Video-MME",  # lmms-eval tasks/videomme/videomme.yaml (repo moved from lmms-lab)
        kind="video",
        media_patterns=("videos_chunked_*.zip",),
        archives=("videos_chunked_*.zip",),
        split_label="duration",
        paper="GIRAFFE Table 5 (short / medium / long / overall)",
    ),
    BenchmarkSpec(
        name="longvideobench",
        title="LongVideoBench (val)",
        hub_id="longvideobench/LongVideoBench",  # gated: accept the terms on the hub and set HF_TOKEN
        kind="video",
        media_patterns=("videos.tar.part.*",),
        archives=("videos.tar",),
        split_archives=(("videos.tar.part.*", "videos.tar"),),
        split_label="duration_group",
        paper="GIRAFFE Table 5 (duration groups 8-15 s, 15-60 s, 180-600 s, 900-3600 s)",
    ),
    BenchmarkSpec(
        name="mme",
        title="MME",
        hub_id="lmms-lab-encoder/MME",  # lmms-eval tasks/mme/mme.yaml
        kind="image",
        split_label="category",
        paper="GIRAFFE Table 6 (MME perception / cognition)",
    ),
    BenchmarkSpec(
        name="mmbench",
        title="MMBench (en, dev)",
        hub_id="lmms-lab-encoder/MMBench",  # lmms-eval tasks/mmbench/_default_template_mmbench_en_yaml
        kind="image",
        split_label="category",
        paper="GIRAFFE Table 6 (MMBench en)",
    ),
)

BY_NAME = {b.name: b for b in BENCHMARKS}


def get_benchmark(name: str) -> BenchmarkSpec:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown benchmark {name!r}; known: {sorted(BY_NAME)}") from None
