"""DeepSpeed: the config a run actually uses, the engine, and its checkpoints.

The shipped configs (``training/configs/zero2.json``, ``zero3_offload.json``) hold concrete
values; :func:`resolve_deepspeed_config` overwrites the ones that must agree with the
``TrainConfig`` (micro-batch 1, accumulation, batch size, clipping, precision, optimizer
lr/decay, sequence-parallel size), so a config file can never contradict the run and no
``"auto"`` value reaches DeepSpeed (``"auto"`` is a Hugging Face Trainer convention that plain
``deepspeed.initialize`` does not understand).

Only imported when ``TrainConfig.deepspeed`` is set: DeepSpeed is a GPU dependency.
"""

from __future__ import annotations

import json
import shutil
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from training import distributed
from training.config import TrainConfig
from training.loss import CausalLMLoss
from training.modeling import resolve_attn_implementation, resolve_dtype, unwrap
from training.optim import build_optimizer, build_scheduler
from training.state import STATE_FILE, TrainerState, read_trainer_state, rng_state, set_rng_state, state_dirs
from training.ulysses import enable_ulysses

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
SHIPPED = {"zero2": CONFIG_DIR / "zero2.json", "zero3_offload": CONFIG_DIR / "zero3_offload.json"}


def shipped_config(name_or_path: str) -> str:
    """``zero2`` / ``zero3_offload`` -> the shipped file; anything else is taken as a path."""
    return str(SHIPPED.get(name_or_path, name_or_path))


def _find_auto(value: Any, where: str = "") -> list[str]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _find_auto(v, f"{where}.{k}" if where else k)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _find_auto(v, f"{where}[{i}]")]
    return [where] if value == "auto" else []


def resolve_deepspeed_config(cfg: TrainConfig, world_size: int, dtype: torch.dtype) -> dict[str, Any]:
    """The DeepSpeed config dict for this run (file values, run-defined keys overwritten)."""
    ds = json.loads(Path(cfg.deepspeed).read_text())
    sp = cfg.sequence_parallel_size
    if world_size % sp:
        raise ValueError(f"world size {world_size} is not a multiple of sequence_parallel_size {sp}")
    dp = world_size // sp
    ds["train_micro_batch_size_per_gpu"] = 1  # one packed sequence
    ds["gradient_accumulation_steps"] = cfg.gradient_accumulation
    ds["train_batch_size"] = cfg.gradient_accumulation * dp
    ds["gradient_clipping"] = float(cfg.max_grad_norm)
    ds["bf16"] = {**ds.get("bf16", {}), "enabled": dtype == torch.bfloat16}
    ds["fp16"] = {**ds.get("fp16", {}), "enabled": dtype == torch.float16}
    if "optimizer" in ds:
        params = ds["optimizer"].setdefault("params", {})
        params["lr"] = cfg.learning_rate
        params["weight_decay"] = cfg.weight_decay
    if sp > 1:
        ds["sequence_parallel_size"] = sp
    auto = _find_auto(ds)
    if auto:
        raise ValueError(f"deepspeed config {cfg.deepspeed} has 'auto' values at {auto}: give concrete values")
    return ds


def zero_stage(engine_or_config) -> int:
    if isinstance(engine_or_config, dict):
        return int((engine_or_config.get("zero_optimization") or {}).get("stage", 0))
    return int(engine_or_config.zero_optimization_stage())


def deepspeed_engine(model, cfg: TrainConfig, info):
    """``deepspeed.initialize`` with our optimizer/schedule (or the config's optimizer, e.g.
    the CPU-offloaded AdamW of ZeRO-3 offload, with our schedule on top)."""
    import deepspeed

    ds_config = resolve_deepspeed_config(cfg, info.world_size, resolve_dtype(cfg, info.device))
    mpu = None
    if cfg.sequence_parallel_size > 1:
        mpu = enable_ulysses(model, resolve_attn_implementation(cfg, info.device), cfg.sequence_parallel_size)
    sp_group = None
    if mpu is not None:
        sp_group = mpu.get_sequence_parallel_group()
    module = CausalLMLoss(model, chunk_size=cfg.loss_chunk_size, sp_group=sp_group)
    params = [p for p in module.parameters() if p.requires_grad]
    if "optimizer" in ds_config:
        optimizer, scheduler = None, (lambda opt: build_scheduler(opt, cfg))
    else:
        optimizer = build_optimizer(model, cfg)
        scheduler = build_scheduler(optimizer, cfg)
    engine, optimizer, _, scheduler = deepspeed.initialize(
        model=module, model_parameters=params, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config, mpu=mpu
    )
    return engine, optimizer, scheduler


def save_ds_state(engine, cfg: TrainConfig, trainer: TrainerState, info) -> Path:
    """Every rank writes its shard (``engine.save_checkpoint``); rank 0 then marks it complete."""
    tag = f"step_{trainer.step}"
    path = cfg.state_root / tag
    engine.save_checkpoint(str(cfg.state_root), tag=tag)
    torch.save(rng_state(unwrap(engine.module)), path / f"rng_rank{info.rank}.pt")
    distributed.barrier(info)
    if info.is_main:
        (path / STATE_FILE).write_text(trainer.to_json())
        for _, old in state_dirs(cfg.state_root)[: -cfg.keep_states]:
            shutil.rmtree(old, ignore_errors=True)
    distributed.barrier(info)
    return path


def load_ds_state(engine, path: Path, info) -> TrainerState:
    load_path, _ = engine.load_checkpoint(
        str(path.parent), tag=path.name, load_optimizer_states=True, load_lr_scheduler_states=True
    )
    if load_path is None:
        raise RuntimeError(f"DeepSpeed could not load the state in {path}")
    rng = path / f"rng_rank{info.rank}.pt"
    if rng.is_file():
        set_rng_state(torch.load(rng, weights_only=False), unwrap(engine.module))
    return read_trainer_state(path)


def gathered_for_export(engine):
    """ZeRO-3 partitions every weight across ranks: gather them for the final save."""
    if zero_stage(engine) != 3:
        return nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(list(engine.module.parameters()), modifier_rank=None)
