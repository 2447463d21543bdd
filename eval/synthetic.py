"""Training items of the embedded benchmarks' task types, for the base model to learn them.

The embedded base model starts from random weights, so on its own every score is chance and no
extension method can be told apart from another. ``model/base`` therefore teaches it the task
types first, at its original context only. The items come from the benchmarks' own embedded
generators and loaders (``Benchmark.generate`` + ``Benchmark.load``, the same prompts, media
and answers as the evaluated items) drawn at *other seeds*, so no evaluated item is trained on:

* Visual Haystack needle questions over a few images (1 to a few, never a long haystack);
* MME yes/no and MMBench multiple-choice questions true of drawn pictures;
* Video-MME and LongVideoBench questions true of the clips (which test pattern, how long),
  over the benchmarks' clips at other seeds and over short clips that fit the original context;
* planted-fact retrieval in text: a short document with a fact at a random depth and four
  locker numbers to choose from (the ETVLM long-text task at short length);
* naming the colour of a drawn shape: dense supervision for the vision side, which a yes/no
  answer's single bit gives too little of (the first phase of ``eval.base_model``'s curriculum);
* "is there a <colour> <shape>?" over a drawn picture, in the benchmarks' phrasings, and the
  same questions about objects described in words (the bridge from comparing words to
  comparing a word with a picture).

Every item's picture is drawn from the item's own seed, and the item's question does not
depend on whether its picture was already on disk, so a rerun asks the same questions about the
same pictures.

Items longer than the original context are dropped here (``max_tokens``), so what the model
meets beyond that length at evaluation is new to it: that is what context extension is for.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from assets.contract.atomic import atomic_path
from assets.sources.embedded.media import COLOURS
from assets.sources.embedded.text import document, planted_fact
from assets.sources.hub import HubSettings
from eval.benchmarks import BENCHMARKS
from eval.embedded import PATTERN_NAMES, SHAPES, draw_objects, duration_question, encode_clip, pattern_question
from eval.fetch import fetch_benchmark
from eval.formats import LETTERS, MC_POST_PROMPT, FetchOptions
from eval.items import CHOICE, YES_NO, EvalItem

TRAIN_SEED_BASE = 1000  # the evaluated samples use seed 0; training seeds start here
RETRIEVAL = "retrieval"


@dataclass(frozen=True)
class SyntheticConfig:
    """How many training items of each kind (``seeds``: generator runs per benchmark)."""

    seeds: int = 48
    video_seeds: int = 1
    haystack_sizes: tuple[int, ...] = (1, 2, 3, 5, 10, 20)
    haystack_items_per_size: int = 100
    retrieval_items: int = 240
    retrieval_words: tuple[int, int] = (20, 90)
    describe_items: int = 1200
    existence_items: int = 1200
    text_existence_items: int = 1500
    image_size: int = 56
    clip_items: int = 240
    clip_seconds: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    seed: int = TRAIN_SEED_BASE

    def key(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


def benchmark_items(root: Path, cfg: SyntheticConfig) -> list[EvalItem]:
    """Every benchmark's embedded sample generated at the training seeds and loaded as items."""
    items: list[EvalItem] = []
    for bench in BENCHMARKS:
        n_seeds = cfg.video_seeds if bench.kind == "video" else cfg.seeds
        if bench.kind == "multi_image":
            n_seeds = 1  # one generator run holds every count's items
        for k in range(n_seeds):
            seed = cfg.seed + k
            options = FetchOptions(
                haystack_sizes=cfg.haystack_sizes,
                items_per_size=cfg.haystack_items_per_size,
                image_size=cfg.image_size,
                seed=seed,
            )
            out = root / "items" / bench.name / str(seed)
            fetched = fetch_benchmark(bench, HubSettings(seed=seed), out, root / "embedded" / str(seed), options)
            for item in fetched.items:
                item.item_id = f"train{seed}-{item.item_id}"
                items.append(item)
    return items


def retrieval_items(cfg: SyntheticConfig) -> list[EvalItem]:
    """Planted-fact questions over short documents, four locker numbers to choose from."""
    rng = random.Random(f"retrieval:{cfg.seed}")
    out = []
    for i in range(cfg.retrieval_items):
        doc = document(rng, rng.randint(*cfg.retrieval_words))
        fact, question, _ = planted_fact(rng)
        number = fact.rsplit(" ", 1)[-1].rstrip(".")
        paragraphs = doc.split("\n\n")
        paragraphs.insert(rng.randrange(len(paragraphs) + 1), fact)
        wrong = rng.sample([str(n) for n in range(100, 10000) if str(n) != number], 3)
        options = [number, *wrong]
        rng.shuffle(options)
        letters = "ABCD"
        lines = "\n".join(f"{letters[j]}. locker {o}" for j, o in enumerate(options))
        prompt = "\n\n".join(paragraphs) + f"\n\n{question}\n{lines}\n{MC_POST_PROMPT}"
        out.append(
            EvalItem(
                benchmark=RETRIEVAL,
                item_id=f"retrieval-{cfg.seed}-{i}",
                prompt=prompt,
                answer=letters[options.index(number)],
                answer_type=CHOICE,
                options={letters[j]: f"locker {o}" for j, o in enumerate(options)},
                split="retrieval",
            )
        )
    return out


DESCRIBE = "describe"


def picture(folder: Path, i: int, objs: list[tuple[str, str]], size: int, seed: str) -> Path:
    """The ``i``-th training picture of ``folder``, drawn from its own ``seed`` unless it is on
    disk already. The caller's random stream is not touched here, so an item's question is the
    same whether its picture existed or not (a rerun once asked about pictures it had not drawn)."""
    path = folder / f"{i:05d}.png"
    if not path.is_file():
        with atomic_path(path) as tmp:  # reused when present: never a half-written one
            draw_objects(objs, size, random.Random(seed)).save(tmp, format="PNG")
    return path


def describe_items(root: Path, cfg: SyntheticConfig) -> list[EvalItem]:
    """Dense supervision for the vision side: a drawn picture (the benchmarks' 2x2 layout) and
    "What colour is the <shape>?" / "Which shape is <colour>?", answered in words. A yes/no
    answer is one bit a question; naming the colour teaches the image-to-word link the
    benchmark questions then compare against (training only, never evaluated)."""
    rng = random.Random(f"describe:{cfg.seed}")
    folder = root / "describe"
    folder.mkdir(parents=True, exist_ok=True)
    colours = list(COLOURS)
    out = []
    for i in range(cfg.describe_items):
        k = 1 if i % 2 == 0 else rng.randint(1, 3)
        shapes = rng.sample(list(SHAPES), k)
        objs = [(c, s) for c, s in zip(rng.sample(colours, k), shapes)]
        size = cfg.image_size if k == 1 else rng.choice((cfg.image_size, 2 * cfg.image_size))
        path = picture(folder, i, objs, size, f"describe-img:{cfg.seed}:{i}")
        colour, shape = rng.choice(objs)
        prompt, target = f"What colour is the {shape}?", colour
        out.append(
            EvalItem(
                benchmark=DESCRIBE,
                item_id=f"describe-{cfg.seed}-{i}",
                prompt=prompt + " Answer with one word.",
                answer="yes",  # unused: training answers with target_text
                answer_type=YES_NO,
                images=[str(path)],
                split=DESCRIBE,
                extra={"target_text": target, "objects": k},
            )
        )
    return out


EXISTENCE = "existence"
TEXT_EXISTENCE = "text_existence"


def existence_question(rng: random.Random, objs: list[tuple[str, str]], answer: str) -> str:
    """"Is there a <colour> <shape>?" about ``objs``, in one of the phrasings of the benchmarks
    that ask it (MME's existence and colour questions, a one-image Visual Haystack question).
    A false one names a colour none of ``objs`` has, as the benchmarks' generators do."""
    from eval.benchmarks.mme import MME_POST_PROMPT
    from eval.benchmarks.visual_haystack import PROMPT_PREFIX, question

    colours = list(COLOURS)
    present = rng.choice(objs)
    absent = (rng.choice([c for c in colours if c not in {o[0] for o in objs}]), rng.choice(SHAPES))
    colour, shape = present if answer == "yes" else absent
    form = rng.randrange(3 if len(objs) > 1 else 2)  # the haystack phrasing needs an anchor besides the target
    if form == 0:
        return f"Is there a {colour} {shape} in this image?{MME_POST_PROMPT}"
    if form == 1:
        return f"Is the {present[1]} in the image {colour}?{MME_POST_PROMPT}"
    anchor = next(o for o in objs if o != present)
    return PROMPT_PREFIX + question(anchor, (colour, shape))


def existence_items(root: Path, cfg: SyntheticConfig) -> list[EvalItem]:
    """The yes/no step after naming: :func:`existence_question` over a drawn picture, half of
    them true, so the answer is in the picture and nowhere else (training only, never evaluated)."""
    rng = random.Random(f"existence:{cfg.seed}")
    folder = root / EXISTENCE
    folder.mkdir(parents=True, exist_ok=True)
    colours = list(COLOURS)
    out = []
    for i in range(cfg.existence_items):
        k = rng.randint(1, 3)
        objs = list(zip(rng.sample(colours, k), rng.sample(list(SHAPES), k)))
        size = rng.choice((cfg.image_size, 2 * cfg.image_size))
        path = picture(folder, i, objs, size, f"existence-img:{cfg.seed}:{i}")
        answer = "yes" if i % 2 == 0 else "no"
        out.append(
            EvalItem(
                benchmark=EXISTENCE,
                item_id=f"existence-{cfg.seed}-{i}",
                prompt=existence_question(rng, objs, answer),
                answer=answer,
                answer_type=YES_NO,
                images=[str(path)],
                split=EXISTENCE,
                extra={"objects": k},
            )
        )
    return out


def text_existence_items(cfg: SyntheticConfig) -> list[EvalItem]:
    """The same questions as :func:`existence_items` about objects *described in words*
    ("There is a red circle. There is a blue square."), no picture.

    Why: comparing the colour a question names with the colours the context holds is the step
    the tiny model finds slowly from pictures alone (measured: 64% held out after 1,500 steps,
    chance 50%). Between two words it finds it within a few hundred steps, and with
    the projector trained beside it (``BaseTrainingConfig.projector_lr_scale``) the image
    tokens come to be read the way the words are: the picture questions then rise above chance
    (training only, never evaluated)."""
    rng = random.Random(f"text-existence:{cfg.seed}")
    colours = list(COLOURS)
    out = []
    for i in range(cfg.text_existence_items):
        k = rng.randint(1, 3)
        objs = list(zip(rng.sample(colours, k), rng.sample(list(SHAPES), k)))
        answer = "yes" if i % 2 == 0 else "no"
        said = " ".join(f"There is a {c} {s}." for c, s in objs)
        out.append(
            EvalItem(
                benchmark=TEXT_EXISTENCE,
                item_id=f"text-existence-{cfg.seed}-{i}",
                prompt=f"{said} {existence_question(rng, objs, answer)}",
                answer=answer,
                answer_type=YES_NO,
                split=TEXT_EXISTENCE,
                extra={"objects": k},
            )
        )
    return out


CLIPS = "clips"


def clip_items(root: Path, cfg: SyntheticConfig) -> list[EvalItem]:
    """Short clips (``cfg.clip_seconds``) of the video benchmarks' test patterns, asked their
    questions (which pattern, how long) in Video-MME's and LongVideoBench's prompts by turns.

    Why not the benchmarks' own clips at other seeds: those are 6-20 s, 120-400 video tokens,
    and with the questions' text nearly all of them are longer than the original context, so
    the model met (nearly) no video question in training and answered them at chance. A pattern
    is recognised from any of a clip's frames; a length is read against the clips' lengths seen.
    The clips share the benchmarks' frame size and rate, so a frame looks the same to the model
    (training only, never evaluated)."""
    from eval.benchmarks.longvideobench import longvideobench_prompt
    from eval.benchmarks.videomme import videomme_prompt

    rng = random.Random(f"clips:{cfg.seed}")
    folder = root / CLIPS
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(cfg.clip_items):
        seconds, pattern, hue = rng.choice(cfg.clip_seconds), rng.randrange(len(PATTERN_NAMES)), rng.randint(0, 359)
        path = folder / f"{i:05d}-{pattern}-{seconds}s-{hue}.mp4"
        if not path.is_file():
            encode_clip(path, seconds, pattern, hue)
        videomme = i % 2 == 0
        k = 4 if videomme else 5  # Video-MME's four options, LongVideoBench's five
        for j, (question, opts, right) in enumerate((pattern_question(rng, pattern, k), duration_question(rng, seconds, k))):
            options = {LETTERS[n]: o for n, o in enumerate(opts)}
            prompt = videomme_prompt(question, options) if videomme else longvideobench_prompt(question, options)
            out.append(
                EvalItem(
                    benchmark=CLIPS,
                    item_id=f"clip-{cfg.seed}-{i}-{j}",
                    prompt=prompt,
                    answer=LETTERS[right],
                    answer_type=CHOICE,
                    options=options,
                    video=str(path),
                    split=("pattern", "duration")[j],
                    extra={"seconds": seconds},
                )
            )
    return out


def training_items(root: Path, cfg: SyntheticConfig = SyntheticConfig()) -> list[EvalItem]:
    return (benchmark_items(root, cfg) + retrieval_items(cfg) + describe_items(root, cfg) + existence_items(root, cfg)
            + text_existence_items(cfg) + clip_items(root, cfg))


CHAT_WORDS = ("system", "user", "assistant", "You are a helpful assistant.", "Yes", "No", "yes", "no")


def tokenizer_texts(texts: Iterable[str], items: Sequence[EvalItem]) -> Iterator[str]:
    """What the tiny tokenizer is trained on: the sample text, the chat template's words and the
    training items' prompts and options (so the benchmarks' words are whole tokens, as they are
    for a real model's tokenizer, not spelled out letter by letter)."""
    yield from texts
    yield " ".join(CHAT_WORDS)
    for item in items:
        yield item.prompt
        yield " ".join(str(v) for v in item.options.values())


def items_fingerprint(items: Sequence[EvalItem]) -> str:
    """Content hash of the items: their rows and the bytes of every media file they use."""
    h = hashlib.sha256()
    for item in sorted(items, key=lambda i: i.item_id):
        row = item.to_row()
        row["images"] = [Path(p).name for p in item.images]
        row["video"] = Path(item.video).name if item.video else None
        row["extra"] = ""
        h.update(json.dumps(row, sort_keys=True).encode())
        for p in [*item.images, *([item.video] if item.video else [])]:
            h.update(hashlib.sha256(Path(p).read_bytes()).digest())
    return h.hexdigest()[:16]
