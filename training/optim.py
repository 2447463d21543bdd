"""The optimiser and its learning-rate schedule, shared by the plain-torch and DeepSpeed paths.

One definition for both engines: DeepSpeed takes our schedule on top of its own optimiser.
"""

from __future__ import annotations

import math

import torch

from training.config import TrainConfig
from training.modeling import unwrap


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based).

    Linear warmup over ``warmup_steps`` (the first step already uses 1/warmup, never 0), then
    cosine or linear decay from 1 towards ``min_lr_ratio`` (reached one step after the last), or constant.
    """
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return 1.0
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)  # the last step still learns (never 0)
    if cfg.lr_schedule == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        shape = 1.0 - progress
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * shape


def build_optimizer(model, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases, norms and other 1-D parameters."""
    decay, no_decay = [], []
    for _, p in unwrap(model).named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.learning_rate, betas=(0.9, 0.95), eps=1e-8)


def build_scheduler(optimizer, cfg: TrainConfig):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg))
