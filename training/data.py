"""Where the trainer's micro-batches come from: the one seam between data and training.

The trainer only sees an indexable *batch source*: ``len(source)`` packed sequences and
``source[i]`` -> a dict of model keyword arguments for sequence ``i`` (``input_ids``,
``labels``, ``attention_mask``, ``mm_token_type_ids``, ``pixel_values``/``image_grid_thw``,
``pixel_values_videos``/``video_grid_thw``, ``position_ids`` ...; batch dimension 1). Keys
starting with ``_`` are metadata the trainer does not pass to the model (e.g. ``_seq_id``).

Sources (``TrainConfig.batch_source``):

* ``packed`` - the real collator (``training/collator.py``: ``load_packed_rows``,
  ``PackedBatchBuilder``, ``SampleStore``) over the stage's mixture shards. Imported lazily so
  the trainer, its tests and the CLI work before/without it. ``PackedBatch`` results are turned
  into dicts with their ``model_inputs()``.
* ``file:<path>`` - a list of such dicts saved with ``torch.save`` (tests, benchmarks, a
  frozen batch for debugging).
* ``module:function`` - ``function(cfg, processor)`` returns any sequence of dicts.

Micro-batch ``k`` of the run is ``source[k % len(source)]`` (the mixture is already in a seeded
order, and repeats are explicit rows), so a resumed run at step ``n`` simply starts at
``k = n * gradient_accumulation * world_size``: no iterator state has to be saved. Rank ``r`` of
``world`` data-parallel ranks takes ``k * world + r``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from training.collator import PackedBatchBuilder, SampleStore, load_packed_rows
from training.config import TrainConfig
from training.loss import hf_model
from training.positions.packed import position_rule_for_model


class PackedSource(Sequence):
    """The collator over the mixture shards (lazy: a row becomes tensors when indexed).

    Written against the collator branch's API (``PackedBatchBuilder(processor, store, mode=None,
    position_fn=None, attn_implementation="sdpa", ...)`` returning a ``PackedBatch`` with
    ``model_inputs()``); optional arguments are only passed where the builder accepts them.
    With a model, the builder gets the model's attention implementation and position rule
    (V2PE draws from the model's own delta sampler, whose state the saved RNG keeps).
    """

    def __init__(self, cfg: TrainConfig, processor: Any, model: Any = None) -> None:
        self.rows = load_packed_rows([str(s) for s in cfg.shards])
        if not self.rows:
            raise ValueError(f"the shards {cfg.shards} hold no packed sequences")
        accepted = inspect.signature(PackedBatchBuilder).parameters
        kwargs: dict[str, Any] = {}
        if model is not None:
            base = hf_model(model)
            if "attn_implementation" in accepted:
                kwargs["attn_implementation"] = base.config._attn_implementation
            if "position_fn" in accepted:
                kwargs["position_fn"] = position_rule_for_model(base)
        self.build = PackedBatchBuilder(processor, SampleStore(cfg.data_root), **kwargs)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:  # type: ignore[override]
        built = self.build(self.rows[i])
        if hasattr(built, "model_inputs"):  # PackedBatch
            batch = dict(built.model_inputs())
            batch["_seq_id"] = getattr(built, "seq_id", "")
            return batch
        return dict(built)


def load_batch_file(path: str) -> list[dict[str, Any]]:
    batches = torch.load(path, weights_only=True)
    if not isinstance(batches, list) or not all(isinstance(b, dict) for b in batches):
        raise ValueError(f"{path}: expected a list of dicts of tensors")
    return batches


def save_batch_file(batches: Sequence[dict[str, Any]], path) -> None:
    torch.save(list(batches), str(path))


def open_batch_source(cfg: TrainConfig, processor: Any = None, model: Any = None) -> Sequence[dict[str, Any]]:
    """The run's batch source (see the module docstring)."""
    spec = cfg.batch_source
    if spec == "packed":
        source: Sequence[dict[str, Any]] = PackedSource(cfg, processor, model)
    elif spec.startswith("file:"):
        source = load_batch_file(spec[5:])
    else:
        module, _, name = spec.partition(":")
        source = getattr(importlib.import_module(module), name)(cfg, processor)
    if len(source) == 0:
        raise ValueError(f"batch source {spec!r} is empty")
    return source


def micro_batch_index(step: int, micro: int, accumulation: int, rank: int = 0, world: int = 1) -> int:
    """Global index of micro-batch ``micro`` of optimiser step ``step`` on ``rank``."""
    return (step * accumulation + micro) * world + rank


def make_batches(
    cfg: TrainConfig, processor: Any = None, start_step: int = 0, rank: int = 0, world: int = 1, model: Any = None
) -> Iterator[dict[str, Any]]:
    """Micro-batches for this rank from optimiser step ``start_step`` on, cycling the source."""
    source = open_batch_source(cfg, processor, model)
    step = start_step
    while True:
        for micro in range(cfg.gradient_accumulation):
            yield source[micro_batch_index(step, micro, cfg.gradient_accumulation, rank, world) % len(source)]
        step += 1


def model_inputs(batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    """The model's keyword arguments from a batch: metadata (``_*``) dropped, tensors moved."""
    out = {}
    for k, v in batch.items():
        if k.startswith("_"):
            continue
        out[k] = v.to(device, non_blocking=True) if torch.is_tensor(v) else v
    return out


def batch_tokens(batch: dict[str, Any]) -> int:
    """Tokens the model processes for a batch (attended positions)."""
    mask = batch.get("attention_mask")
    if torch.is_tensor(mask) and mask.dim() == 2:
        return int(mask.sum())
    return int(batch["input_ids"].numel())


# -- a text-only ChatML batch (tests, the CPU benchmark, smoke runs) ---------------------------


def text_batch(tokenizer, messages: list[dict[str, str]], capacity: int | None = None) -> dict[str, torch.Tensor]:
    """One sequence from text-only ChatML turns, labels on assistant turns only.

    Renders each turn as ``<|im_start|>role\\ncontent<|im_end|>\\n`` (Qwen2-VL's template for
    text) and masks with -100 everything except an assistant turn's content and its
    ``<|im_end|>``. Images and video are the collator's job; this is for text and tests.
    """
    ids: list[int] = []
    labels: list[int] = []
    for m in messages:
        head = tokenizer(f"<|im_start|>{m['role']}\n", add_special_tokens=False)["input_ids"]
        body = tokenizer(f"{m['content']}<|im_end|>", add_special_tokens=False)["input_ids"]
        tail = tokenizer("\n", add_special_tokens=False)["input_ids"]
        ids += head + body + tail
        trained = m["role"] == "assistant"
        labels += [-100] * len(head) + (body if trained else [-100] * len(body)) + [-100] * len(tail)
    if capacity is not None and len(ids) > capacity:
        raise ValueError(f"text batch of {len(ids)} tokens exceeds the capacity {capacity}")
    input_ids = torch.tensor([ids], dtype=torch.long)
    return {
        "input_ids": input_ids,
        "labels": torch.tensor([labels], dtype=torch.long),
        "attention_mask": torch.ones_like(input_ids),
        "mm_token_type_ids": torch.zeros_like(input_ids),
    }
