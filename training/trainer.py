"""The training loop: one stage of progressive context extension.

``train(cfg)`` loads the model with its position method, freezes the vision tower and merger,
optionally adds LoRA, and runs ``cfg.steps`` optimiser steps over micro-batches of one packed
sequence each, with gradient accumulation, clipping, warmup + cosine/linear decay and gradient
checkpointing. It runs as a single process, under torchrun (DDP; gloo on CPU) or under the
DeepSpeed launcher (ZeRO from a JSON config; Ulysses sequence parallelism when configured).
It saves resumable state every ``save_every`` steps, resumes from the latest compatible state,
and exports a plain ``save_pretrained`` checkpoint (LoRA merged, method recorded in the config,
processor files beside it) to ``<output>/final``.
"""

from __future__ import annotations

import json
import resource
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from assets.contract.markdown import png_markdown
from assets.contract.progress import duration
from training import distributed
from training.config import TrainConfig, validate
from training.data import batch_tokens, make_batches, model_inputs
from training.ds import deepspeed_engine, gathered_for_export, load_ds_state, save_ds_state
from training.loss import CausalLMLoss
from training.modeling import (
    add_lora,
    count_params,
    enable_gradient_checkpointing,
    freeze_vision,
    load_model,
    load_trainable_state,
    merged_for_export,
    resolve_attn_implementation,
    resolve_dtype,
    save_processor,
    trainable_state,
    unwrap,
    weights_fingerprint,
)
from training.optim import build_optimizer, build_scheduler
from training.report import (
    Reporter,
    json_value,
    loss_sparkline,
    loss_table,
    md,
    path_value,
    training_curves_png,
)
from training.state import TrainerState, latest_state, load_state, read_trainer_state, save_state

REPORT_FILE = "training_report.json"


# -- result ---------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    checkpoint: str
    steps: int
    start_step: int
    resumed_from: str | None
    losses: list[tuple[int, float]]
    tokens: int
    """Over the whole run: a resumed run counts the steps before the restart too."""
    seconds: float
    tokens_per_s: float
    peak_memory_mb: float
    peak_memory_kind: str
    initialized_from: dict[str, Any]
    weights_fingerprint: str
    params: dict[str, int]
    attn_implementation: str
    dtype: str
    world_size: int
    method: dict[str, Any] | None
    lrs: list[tuple[int, float]] = field(default_factory=list)
    run_tokens: int = 0
    """Tokens this process trained on (the rate ``tokens_per_s`` is over these)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def peak_memory(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda max_memory_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS (CPU)"


# -- the run --------------------------------------------------------------------------------------


def _seed(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _processor_for(cfg: TrainConfig):
    if cfg.batch_source.startswith("file:"):
        return None
    from training.processor import load_processor

    return load_processor(cfg.model_path)


def _resumable(cfg: TrainConfig, init_fp: str, reporter: Reporter) -> Path | None:
    """The latest state written by this same configuration from these same initial weights."""
    if not cfg.resume:
        return None
    path = latest_state(cfg.state_root)
    if path is None:
        return None
    saved = read_trainer_state(path)
    if saved.fingerprint != cfg.resume_fingerprint() or saved.initialized_from.get("fingerprint") != init_fp:
        reporter.log(f"not resuming from {path}: it was written by a different configuration or initial weights")
        return None
    return path


def _fresh_start(cfg: TrainConfig, info: distributed.DistInfo) -> None:
    """Old states of another configuration would be resumed by mistake later: remove them
    (after every rank has looked at them)."""
    distributed.barrier(info)
    if info.is_main and cfg.state_root.exists():
        shutil.rmtree(cfg.state_root)
    distributed.barrier(info)


def train(cfg: TrainConfig, reporter: Reporter | None = None) -> TrainResult:
    validate(cfg)
    use_ds = cfg.deepspeed is not None
    info = distributed.setup(use_deepspeed=use_ds)
    own_reporter = reporter is None
    reporter = reporter or Reporter(rank=info.rank)
    try:
        return _train(cfg, info, reporter)
    except BaseException as err:
        if own_reporter:
            reporter.close(err)
            own_reporter = False
        raise
    finally:
        if own_reporter:
            reporter.close()
        distributed.teardown()


def _train(cfg: TrainConfig, info: distributed.DistInfo, reporter: Reporter) -> TrainResult:
    device = info.device
    _seed(cfg.seed)
    capacity = cfg.resolved_capacity()
    reporter.log(
        f"training {cfg.recipe or '-'} stage {cfg.stage or '-'} from {cfg.model_path}: {cfg.steps} steps, "
        f"world size {info.world_size}, {'deepspeed ' + cfg.deepspeed if cfg.deepspeed else 'torch'}"
    )

    model = load_model(cfg, device)
    init_fp = weights_fingerprint(model)
    initialized_from = {"path": str(cfg.model_path), "fingerprint": init_fp}
    freeze_vision(model)
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    torch.manual_seed(cfg.seed)  # LoRA's initialisation is part of the seeded run
    if cfg.lora:
        model = add_lora(model, cfg)
    params = count_params(model).as_dict()
    model.to(device)
    model.train()
    reporter.log(
        f"initial weights {init_fp} | trainable {params['trainable']:,} params, frozen {params['frozen']:,} "
        f"(vision tower + merger {params['vision']:,}{', LoRA' if cfg.lora else ''})"
    )

    resume_path = _resumable(cfg, init_fp, reporter)
    if resume_path is None:
        _fresh_start(cfg, info)
    sp_size = cfg.sequence_parallel_size

    if cfg.deepspeed:
        engine, optimizer, scheduler = deepspeed_engine(model, cfg, info)
        trainer_state = TrainerState(fingerprint=cfg.resume_fingerprint(), initialized_from=initialized_from)
        if resume_path is not None:
            trainer_state = load_ds_state(engine, resume_path, info)
        train_module = engine
    else:
        optimizer = build_optimizer(model, cfg)
        scheduler = build_scheduler(optimizer, cfg)
        trainer_state = TrainerState(fingerprint=cfg.resume_fingerprint(), initialized_from=initialized_from)
        if resume_path is not None:
            trainer_state, weights = load_state(resume_path, optimizer, scheduler, model)
            load_trainable_state(model, weights)
        train_module = CausalLMLoss(model, chunk_size=cfg.loss_chunk_size)
        if info.distributed:
            from torch.nn.parallel import DistributedDataParallel

            train_module = DistributedDataParallel(
                train_module, device_ids=[info.local_rank] if device.type == "cuda" else None
            )
        engine = None

    start_step = trainer_state.step
    if resume_path is not None:
        reporter.log(f"resumed from {resume_path} at step {start_step}")

    dp_world, dp_rank = info.world_size // sp_size, info.rank // sp_size
    batches = make_batches(
        cfg, _processor_for(cfg), start_step=start_step, rank=dp_rank, world=dp_world, model=model
    )
    prior_seconds = trainer_state.seconds
    started = time.perf_counter()
    run_tokens = 0
    for step in range(start_step, cfg.steps):
        step_loss = 0.0
        step_tokens = 0
        lr = optimizer.param_groups[0]["lr"]  # the rate this step uses
        for micro in range(cfg.gradient_accumulation):
            batch = next(batches)
            n = int(batch["input_ids"].shape[-1])
            if capacity and n > capacity:
                raise ValueError(f"a micro-batch of {n} tokens exceeds the stage capacity {capacity}")
            inputs = model_inputs(batch, device)
            last = micro == cfg.gradient_accumulation - 1
            if engine is not None:
                loss = engine(**inputs)
                engine.backward(loss)
                engine.step()
            else:
                sync = nullcontext() if (last or not info.distributed) else train_module.no_sync()
                with sync:
                    loss = train_module(**inputs)
                    (loss / cfg.gradient_accumulation).backward()
            step_loss += float(loss.detach()) / cfg.gradient_accumulation
            step_tokens += batch_tokens(batch)
        if engine is None:
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        step_loss = distributed.all_reduce_mean(step_loss, info)
        step_tokens = distributed.all_reduce_sum(step_tokens, info) // sp_size
        run_tokens += step_tokens
        trainer_state.step = step + 1
        trainer_state.losses.append((step + 1, step_loss))
        trainer_state.lrs.append((step + 1, lr))
        trainer_state.tokens += step_tokens
        elapsed = time.perf_counter() - started
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            left = cfg.steps - step - 1
            eta = f", ETA {duration(elapsed / (step + 1 - start_step) * left)}" if left else ""
            reporter.log(
                f"step {step + 1}/{cfg.steps} loss {step_loss:.4f} lr {lr:.3e} tokens {step_tokens} "
                f"tok/s {run_tokens / max(elapsed, 1e-9):.1f}{eta}"
            )
        if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
            trainer_state.seconds = prior_seconds + time.perf_counter() - started
            _save(cfg, info, trainer_state, model, engine, optimizer, scheduler, reporter)

    seconds = time.perf_counter() - started
    tokens_per_s = run_tokens / seconds if seconds > 0 and run_tokens else 0.0
    peak_mb, peak_kind = peak_memory(device)
    trainer_state.seconds = prior_seconds + seconds
    if cfg.save_every and cfg.steps > start_step:
        _save(cfg, info, trainer_state, model, engine, optimizer, scheduler, reporter)

    result = TrainResult(
        checkpoint=str(cfg.final_dir),
        steps=cfg.steps,
        start_step=start_step,
        resumed_from=str(resume_path) if resume_path else None,
        losses=list(trainer_state.losses),
        tokens=trainer_state.tokens,
        seconds=seconds,
        tokens_per_s=tokens_per_s,
        peak_memory_mb=peak_mb,
        peak_memory_kind=peak_kind,
        initialized_from=initialized_from,
        weights_fingerprint="",
        params=params,
        attn_implementation=resolve_attn_implementation(cfg, device),
        dtype=str(resolve_dtype(cfg, device)).replace("torch.", ""),
        world_size=info.world_size,
        method=cfg.method,
        lrs=list(trainer_state.lrs),
        run_tokens=run_tokens,
    )
    result.weights_fingerprint = _export(cfg, info, model, engine, result, reporter)
    if info.is_main:
        _report(cfg, result, reporter)
    distributed.barrier(info)
    return result


def _save(cfg, info, trainer_state, model, engine, optimizer, scheduler, reporter) -> None:
    if engine is not None:
        path = save_ds_state(engine, cfg, trainer_state, info)
    else:
        path = None
        if info.is_main:
            path = save_state(
                cfg.state_root, trainer_state, trainable_state(model), optimizer, scheduler, unwrap(model), cfg.keep_states
            )
        distributed.barrier(info)
    reporter.log(f"saved resumable state at step {trainer_state.step}" + (f" to {path}" if path else ""))


def _export(cfg: TrainConfig, info, model, engine, result: TrainResult, reporter: Reporter) -> str:
    """Write ``<output>/final`` (rank 0): merged weights, method in config, processor, report."""
    fingerprint = ""
    if engine is not None:
        ctx = gathered_for_export(engine)
    else:
        ctx = nullcontext()
    with ctx:
        if info.is_main:
            export = merged_for_export(model)
            for c in (export.config, getattr(export.config, "text_config", None)):
                if c is not None and hasattr(c, "use_cache"):
                    c.use_cache = True  # checkpointing turned it off for training; eval wants it on
            fingerprint = weights_fingerprint(export)
            tmp = cfg.output_path / "final.tmp"
            if tmp.exists():
                shutil.rmtree(tmp)
            export.save_pretrained(tmp, safe_serialization=True)
            save_processor(cfg.model_path, tmp)
            result.weights_fingerprint = fingerprint
            (tmp / REPORT_FILE).write_text(json.dumps(result.to_dict(), indent=2, default=str))
            if cfg.final_dir.exists():
                shutil.rmtree(cfg.final_dir)
            tmp.rename(cfg.final_dir)
            reporter.log(f"checkpoint written to {cfg.final_dir} (weights {fingerprint})")
    distributed.barrier(info)
    return fingerprint


def _report(cfg: TrainConfig, result: TrainResult, reporter: Reporter) -> None:
    title = f"{cfg.recipe or 'run'} {cfg.stage}".strip()
    png = training_curves_png(result.losses, result.lrs, title, resumed_at=result.start_step)
    png_path = cfg.output_path / "loss_curve.png"
    tmp = png_path.with_name("loss_curve.png.tmp")
    tmp.write_bytes(png)
    tmp.replace(png_path)
    losses = [v for _, v in result.losses]
    metadata = {
        "checkpoint": path_value(result.checkpoint),
        "steps": result.steps,
        "resumed_from_step": result.start_step,
        "resumed_from": result.resumed_from or "",
        "first_loss": round(losses[0], 4) if losses else float("nan"),
        "final_loss": round(losses[-1], 4) if losses else float("nan"),
        "loss_curve": md(png_markdown(png, "loss and learning rate")),
        "loss_curve_png": path_value(str(png_path)),
        "losses": md(loss_table(result.losses, result.lrs)),
        "loss_trend": loss_sparkline(result.losses),
        "training_report": path_value(str(Path(result.checkpoint) / REPORT_FILE)),
        "tokens": result.tokens,
        "tokens_this_run": result.run_tokens,
        "tokens_per_s": round(result.tokens_per_s, 1),
        "train_seconds": round(result.seconds, 1),
        "peak_memory_mb": round(result.peak_memory_mb),
        "peak_memory_kind": result.peak_memory_kind,
        "initialized_from": result.initialized_from["path"],
        "initial_weights_fingerprint": result.initialized_from["fingerprint"],
        "weights_fingerprint": result.weights_fingerprint,
        "trainable_params": result.params["trainable"],
        "frozen_params": result.params["frozen"],
        "attn_implementation": result.attn_implementation,
        "dtype": result.dtype,
        "world_size": result.world_size,
        "position_method": json_value(result.method),
    }
    reporter.materialize(metadata)
