"""The embedded base model: a tiny Qwen2-VL taught the benchmarks' task types at a short context.

``model/base`` on the embedded default calls :func:`build_base_model`. It builds the tiny
model (``training.tiny_model``: BPE tokenizer on the sample text, real special tokens, seeded
random weights), then, unless told not to, teaches it the task types of the embedded benchmarks
(``eval.synthetic``: items from the benchmarks' own generators at other seeds, plus planted-fact
retrieval) with ``training.base_training``, on items no longer than ``original_length`` tokens.

That length is the model's original context L_V: it is written into the config
(``giraffe_base_model.original_length`` and ``max_position_embeddings``), the position methods
take it as their default ``original_length``, and the evaluation reaches far past it (Visual
Haystack with up to 150 images is several times it), so the curve falls where the model has
never been and context extension has something to do.

The result is cached by content hash: the hash of the tokenizer corpus settings, the model
shape, the training settings and the training items themselves (rows and media bytes). A
second call with the same inputs reuses the saved folder (seconds), a changed input retrains.
Writes are atomic (a temporary folder renamed into place).
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eval.items import EvalItem
from eval.runner import EMBEDDED_ANSWER_MODE, Prepared, RunConfig, Runner
from eval.synthetic import CLIPS, DESCRIBE, EXISTENCE, TEXT_EXISTENCE, SyntheticConfig, items_fingerprint, tokenizer_texts, training_items
from training.base_training import BaseTrainingConfig, train_base
from training.tiny_model import BASE_INIT_RANGE, BASE_RECORD_KEY, TinyModelConfig, build_model, train_tokenizer

BASE_MODEL_VERSION = 5  # bump when the recipe changes for the same inputs
CACHE_FILE = "giraffe_base.json"
HELD_OUT = 128
NAMING = "naming (one shape's colour)"  # the held-out row of the curriculum's first skill


@dataclass(frozen=True)
class Phase:
    """One stretch of the base model's curriculum: ``steps`` optimiser steps over the training
    items it selects. ``tasks`` holds benchmark names or ``benchmark/split`` pairs (empty: every
    item); ``max_images`` and ``max_objects`` (drawn objects, where an item records them) keep a
    phase to the easy cases.

    Why a curriculum: a tiny model taught everything at once settles on each task's answer
    prior (yes/no, a letter) and never looks at the image (measured: its loss is the same to
    three decimals with the pictures swapped between items). Taught first to name the colour
    of one drawn object (a dense answer only the image holds), it looks: the swapped-picture
    loss rises several-fold and held-out naming is far above chance. The yes/no phase follows
    (pictures and words-only items together: held-out MME and one-to-two-image Visual Haystack
    then rise above chance), with the short clips' questions beside it (which pattern, how
    long: met only in the last phase, as one task in a dozen, they stayed at chance, 20% of 15
    held out; in this phase, 60% and every short Video-MME item right); the last phase adds
    every other task, whose multiple-choice answers are taught as the run config's answer mode
    scores them (the options' texts in the embedded default ``cloze``: option letters were
    measured still near chance within these minutes)."""

    name: str
    steps: int
    tasks: tuple[str, ...] = ()
    max_images: int | None = None
    max_objects: int | None = None

    def admits(self, item: EvalItem) -> bool:
        if self.tasks and item.benchmark not in self.tasks and f"{item.benchmark}/{item.split}" not in self.tasks:
            return False
        if self.max_images is not None and item.n_images > self.max_images:
            return False
        objects = item.extra.get("objects")
        return self.max_objects is None or objects is None or objects <= self.max_objects


CURRICULUM = (
    Phase("naming", 400, (DESCRIBE, TEXT_EXISTENCE), max_objects=1),
    Phase("yes/no and clips", 1200,
          (DESCRIBE, TEXT_EXISTENCE, EXISTENCE, "mme/existence", "mme/color", "visual_haystack", CLIPS), max_images=2),
    Phase("every task", 400),
)
"""The default curriculum; the last phase runs until ``BaseTrainingConfig.steps``."""


def phase_schedule(curriculum: Sequence[Phase], total_steps: int) -> list[tuple[Phase, int]]:
    """(phase, first step) for the phases that start before ``total_steps``; the last phase
    given runs to the end whatever its own ``steps``."""
    out, start = [], 0
    for phase in curriculum:
        if start >= total_steps:
            break
        out.append((phase, start))
        start += phase.steps
    return out


@dataclass(frozen=True)
class BaseModelSpec:
    """Everything the embedded base model depends on (its cache key, with the items' hash)."""

    tiny: TinyModelConfig = field(default_factory=lambda: TinyModelConfig(initializer_range=BASE_INIT_RANGE))
    training: BaseTrainingConfig = field(default_factory=BaseTrainingConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    curriculum: tuple[Phase, ...] = CURRICULUM
    original_length: int = 256
    tokenizer_documents: int = 400
    corpus_seed: int = 0
    teach: bool = True

    def key(self, items_hash: str, answer_mode: str) -> str:
        """``answer_mode``: the training targets are the answers as that mode scores them (a
        letter, or in ``cloze`` mode the option's text), so it is part of what was taught."""
        data = {
            "answer_mode": answer_mode,
            "version": BASE_MODEL_VERSION,
            "tiny": asdict(self.tiny),
            "training": self.training.to_dict(),
            "synthetic": self.synthetic.key(),
            "curriculum": [asdict(p) for p in self.curriculum],
            "original_length": self.original_length,
            "tokenizer_documents": self.tokenizer_documents,
            "corpus_seed": self.corpus_seed,
            "teach": self.teach,
            "items": items_hash,
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class BaseModelResult:
    path: Path
    cached: bool
    record: dict[str, Any]
    held_out: list[dict[str, Any]] = field(default_factory=list)
    losses: list[tuple[int, float]] = field(default_factory=list)
    phases: list[dict[str, Any]] = field(default_factory=list)


def _accuracy_by_task(rows: Iterable[dict]) -> dict[str, float]:
    by: dict[str, list[bool]] = {}
    for r in rows:
        by.setdefault(r["benchmark"], []).append(bool(r["correct"]))
    return {k: sum(v) / len(v) for k, v in sorted(by.items())}


def naming_accuracy(runner: Runner, prepared: Sequence[Prepared], batch_size: int = 16) -> float:
    """Share of naming items (``extra.target_text``) whose answer's first token is the
    model's most likely one among the candidates' first tokens, right after the prompt: the
    skill the curriculum's first phase teaches, which no benchmark scores directly."""
    import torch

    names = sorted({str(p.item.extra["target_text"]) for p in prepared})
    first = [runner.tokenizer(n, add_special_tokens=False)["input_ids"][0] for n in names]
    if len(set(first)) < len(names):
        raise ValueError(f"naming answers {names} share a first token: they cannot be told apart by one step")
    right = 0
    with torch.no_grad():
        for i in range(0, len(prepared), batch_size):
            chunk = prepared[i : i + batch_size]
            logits = runner.model(**runner.encode(chunk)).logits[:, -1, first]
            right += sum(names[int(k)] == p.item.extra["target_text"] for k, p in zip(logits.argmax(-1), chunk))
    return right / len(prepared) if prepared else 0.0


def prepare_within(runner: Runner, items: Sequence[EvalItem], max_tokens: int) -> tuple[list[Prepared], dict[str, int]]:
    """The items whose prompt + taught answer + ``<|im_end|>`` fit ``max_tokens``, prepared
    once (images opened, videos sampled); and how many of each benchmark were dropped as longer.
    The answer is counted as taught (in cloze mode an option's whole text, up to 8 tokens), so
    no training position lies past the original context."""
    kept, dropped = [], {}
    for item in items:
        prepared = runner.prepare(item)
        n = int(runner.encode([prepared])["input_ids"].shape[1]) + len(runner.answer_ids(item)) + 1
        if n <= max_tokens:
            kept.append(prepared)
        else:
            dropped[item.benchmark] = dropped.get(item.benchmark, 0) + 1
    return kept, dropped


def build_base_model(
    out_dir: Path,
    work_dir: Path,
    texts: Callable[[], Iterable[str]],
    spec: BaseModelSpec = BaseModelSpec(),
    run_config: RunConfig = RunConfig(answer_mode=EMBEDDED_ANSWER_MODE),
    log: Callable[[str], None] | None = None,
) -> BaseModelResult:
    """The base model at ``out_dir`` (``save_pretrained`` layout), taught or reused from cache."""
    import torch

    from training.processor import build_processor

    log = log or (lambda msg: None)
    items = training_items(work_dir, spec.synthetic) if spec.teach else []
    key = spec.key(items_fingerprint(items) if items else "none", run_config.answer_mode)
    stamp = out_dir / CACHE_FILE
    if stamp.is_file() and (out_dir / "config.json").is_file():
        saved = json.loads(stamp.read_text())
        if saved.get("key") == key:
            log(f"base model: reusing {out_dir} (content hash {key})")
            return BaseModelResult(out_dir, True, saved["record"], saved.get("held_out", []), saved.get("losses", []),
                                   saved.get("phases", []))

    started = time.perf_counter()
    tokenizer = train_tokenizer(tokenizer_texts(texts(), items), spec.tiny.vocab_size)
    processor = build_processor(tokenizer)
    model = build_model(tokenizer, spec.tiny)
    record: dict[str, Any] = {
        "kind": "embedded-tiny-random",
        "parameters": sum(p.numel() for p in model.parameters()),
        "original_length": spec.original_length,
    }
    held_out, losses, phases = [], [], []
    if spec.teach:
        torch.manual_seed(spec.training.seed)
        runner = Runner(model, processor, "base", run_config)
        prepared, dropped = prepare_within(runner, items, spec.original_length)
        random.Random(spec.training.seed).shuffle(prepared)
        held = [p for p in prepared if p.item.benchmark not in (DESCRIBE, TEXT_EXISTENCE)][:HELD_OUT]  # picture items only
        naming = [p for p in prepared if p.item.benchmark == DESCRIBE and p.item.extra.get("objects") == 1][:HELD_OUT // 2]
        kept = {id(p) for p in (*held, *naming)}
        train = [p for p in prepared if id(p) not in kept]
        log(f"base model: {len(train)} training items within {spec.original_length} tokens "
            f"({len(held)} scored and {len(naming)} naming items held out; longer, not used: {dropped or 'none'})")
        before = _accuracy_by_task(runner.run([p.item for p in held]))
        before[NAMING] = naming_accuracy(runner, naming)
        rng = random.Random(spec.training.seed)
        schedule: list[tuple[int, list[Prepared]]] = []
        for phase, start in phase_schedule(spec.curriculum, spec.training.steps):
            pool = [p for p in train if phase.admits(p.item)]
            if not pool:
                raise ValueError(f"base model curriculum: phase {phase.name!r} admits none of the {len(train)} training items")
            schedule.append((start, pool))
            phases.append({"phase": phase.name, "from step": start, "items": len(pool)})
        log("base model: curriculum " + ", ".join(f"{p['phase']} from step {p['from step']} ({p['items']} items)" for p in phases))

        def batch(step: int) -> dict:
            pool = next(pool for start, pool in reversed(schedule) if step >= start)
            return runner.training_batch(rng.sample(pool, min(spec.training.batch_size, len(pool))))

        result = train_base(model, batch, spec.training, log)
        after = _accuracy_by_task(runner.run([p.item for p in held]))
        after[NAMING] = naming_accuracy(runner, naming)
        counts = {k: sum(p.item.benchmark == k for p in held) for k in before} | {NAMING: len(naming)}
        held_out = [{"task": k, "items": counts[k], "before": round(100 * before[k], 1),
                     "after": round(100 * after.get(k, 0.0), 1)} for k in before]
        losses = result.losses
        record.update(
            kind="embedded-tiny",
            steps=spec.training.steps,
            training_items=len(train),
            minutes=round((time.perf_counter() - started) / 60, 1),
            device="CPU" if not torch.cuda.is_available() else "GPU",
            tokens_per_s=round(result.tokens_per_s),
            held_out_accuracy={k: round(100 * v, 1) for k, v in after.items()},
        )
    model.config.text_config.max_position_embeddings = spec.original_length
    setattr(model.config, BASE_RECORD_KEY, record)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    (tmp / CACHE_FILE).write_text(json.dumps({"key": key, "record": record, "held_out": held_out, "losses": losses, "phases": phases}, indent=1))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    log(f"base model: written to {out_dir} (content hash {key})")
    return BaseModelResult(out_dir, False, record, held_out, losses, phases)
