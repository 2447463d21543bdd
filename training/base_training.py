"""Teaching the embedded tiny base model its task types: a short, seeded supervised run.

The embedded default has no pretrained Qwen2-VL to start from, and a random model scores chance
on everything, which makes every extension method look the same. ``model/base`` therefore runs
this loop once (minutes on two CPU cores, cached by content hash by the asset) over answer
continuations of short items (``eval.synthetic``): the language model trains and the
vision tower keeps its seeded random weights (``vision_lr_scale``: training a random tower
from scratch here collapses its output before the language model learns to read it) except
its projector (``projector_lr_scale``), which learns to hand the language model image tokens
it can read. The extension stages later train only the LLM backbone, as the paper does.

The loop is plain torch: AdamW, linear warmup then cosine decay, gradient clipping, cross
entropy on the answer tokens only. Batches come from a callable ``batch(step)`` (dicts of model
inputs; keys starting with ``_`` are not passed to the model, ``_target`` holds the answer
tokens ``logits[:, :block]`` must predict), so the data side stays with whoever knows the
input format.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class BaseTrainingConfig:
    steps: int = 2000
    batch_size: int = 16
    learning_rate: float = 3e-3
    warmup_steps: int = 30
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    log_every: int = 25
    threads: int | None = 1
    """torch intra-op threads while training (None: leave torch's setting). The tiny model's
    kernels are too small to gain from a second thread, and on a busy host two threads per op
    ran 5-6x slower than one (measured on this project's 2-core VM under load)."""
    vision_lr_scale: float = 0.0
    """The vision tower's learning rate as a multiple of ``learning_rate``; 0 keeps it frozen
    at its seeded random weights. Measured on the embedded tasks: a trained random tower
    (x20, x1, even x0.1) first collapses its output to a near-constant vector, and the
    language model learns to ignore the image before the tower learns features; frozen, its
    random features keep the drawn colours linearly decodable (95% with a linear probe), and
    naming a colour is learned within a few hundred steps."""
    projector_lr_scale: float = 1.0
    """The vision tower's merger (the projector from vision features to the language model's
    width) as a multiple of ``learning_rate`` while the rest of the tower stays frozen: LLaVA's
    recipe of a trained projector over a fixed encoder. 0 freezes it with the tower. Measured on
    the embedded tasks (1,500 steps, same items): the picture yes/no questions reached 72% held
    out with the projector trained and 55% with it frozen (chance 50%)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BaseTrainingResult:
    steps: int
    seconds: float
    losses: list[tuple[int, float]] = field(default_factory=list)
    tokens: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def lr_factor(step: int, cfg: BaseTrainingConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def answer_loss(model, batch: dict) -> torch.Tensor:
    """Mean cross entropy of the answer tokens (``_target``) under ``model``."""
    inputs = {k: v for k, v in batch.items() if not k.startswith("_")}
    target = batch["_target"]
    logits = model(**inputs).logits[:, : target.shape[1]].float()
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1).to(logits.device), ignore_index=-100)


def train_base(
    model,
    batch: Callable[[int], dict],
    cfg: BaseTrainingConfig = BaseTrainingConfig(),
    log: Callable[[str], None] | None = None,
) -> BaseTrainingResult:
    """``cfg.steps`` optimiser steps over ``batch(step)``; the model is left in eval mode."""
    log = log or (lambda msg: None)
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    try:
        return _train(model, batch, cfg, log)
    finally:
        torch.set_num_threads(threads)
        for n, p in model.named_parameters():  # a frozen tower trains again in the extension stages' own setup
            p.requires_grad_(n in trainable)


def _train(model, batch, cfg: BaseTrainingConfig, log) -> BaseTrainingResult:
    torch.manual_seed(cfg.seed)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    def part(n: str) -> str:
        if ".visual." not in f".{n}.":
            return "language"
        return "projector" if ".merger." in f".{n}." else "encoder"

    scales = {"language": 1.0, "encoder": cfg.vision_lr_scale, "projector": cfg.projector_lr_scale}
    groups = []
    for name, scale in scales.items():
        params = [p for n, p in named if part(n) == name]
        if params and scale > 0:
            groups.append({"params": params, "lr": cfg.learning_rate * scale})
        elif params:  # frozen: no gradient computed for them at all
            for p in params:
                p.requires_grad_(False)
    params = [p for g in groups for p in g["params"]]
    optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    model.train()
    result = BaseTrainingResult(steps=cfg.steps, seconds=0.0)
    started = time.perf_counter()
    window: list[float] = []
    marks = {math.ceil(cfg.steps * k / 10) for k in range(1, 10)} - {cfg.steps}
    for step in range(cfg.steps):
        inputs = batch(step)
        loss = answer_loss(model, inputs)
        loss.backward()
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        value = float(loss.detach())
        window.append(value)
        result.tokens += int(inputs["attention_mask"].sum())
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            result.losses.append((step + 1, sum(window) / len(window)))  # the curve: every log_every steps
            window.clear()
        if step + 1 in marks:  # the console: the project's progress form, at 10%, ..., 90%
            elapsed = time.perf_counter() - started
            eta = elapsed / (step + 1) * (cfg.steps - step - 1)
            loss = result.losses[-1][1] if result.losses else value
            log(f"base training: {step + 1}/{cfg.steps} steps ({100 * (step + 1) // cfg.steps}%), "
                f"{result.tokens / elapsed:.0f} tokens/s, ETA {eta:.0f} s, loss {loss:.3f}")
    result.seconds = time.perf_counter() - started
    if result.losses:
        log(f"base training: {cfg.steps} steps in {result.seconds:.0f} s, loss {result.losses[0][1]:.3f} -> {result.losses[-1][1]:.3f}")
    model.eval()
    return result
