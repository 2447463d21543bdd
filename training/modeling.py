"""Loading the model to train: position method, frozen vision tower, optional LoRA, export.

Paper 3.3: only the LLM backbone trains; the vision tower (ViT) and its merger (the MLP that
projects visual features into the LLM) stay frozen. :func:`freeze_vision` does that and
returns the parameter counts so the run (and its test) can state exactly what trains.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training.config import TrainConfig
from training.positions.apply import apply_position_method, load_with_position_method


@dataclass(frozen=True)
class ParamCounts:
    trainable: int
    frozen: int
    vision: int
    language: int

    def as_dict(self) -> dict[str, int]:
        return {"trainable": self.trainable, "frozen": self.frozen, "vision": self.vision, "language": self.language}


def resolve_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype:
    if cfg.dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, cfg.dtype)


def resolve_attn_implementation(cfg: TrainConfig, device: torch.device) -> str:
    """SDPA by default; flash-attn 2 (varlen for isolated packing) when installed on a GPU."""
    if cfg.attn_implementation != "auto":
        return cfg.attn_implementation
    import importlib.util

    if device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def model_class(path: str):
    """The architecture class recorded in the checkpoint's config (Qwen2-VL family)."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(path)
    arch = (getattr(config, "architectures", None) or [None])[0]
    cls = getattr(transformers, arch, None) if arch else None
    return cls or transformers.AutoModelForImageTextToText


def load_model(cfg: TrainConfig, device: torch.device):
    """``from_pretrained`` + the recorded method re-applied + the configured method applied.

    The configured method replaces a recorded one (frequencies are computed from the stock
    base, so nothing stacks); None keeps what the checkpoint records.
    """
    model = load_with_position_method(
        cfg.model_path,
        model_cls=model_class(cfg.model_path),
        dtype=resolve_dtype(cfg, device),
        attn_implementation=resolve_attn_implementation(cfg, device),
    )
    if cfg.method is not None:
        apply_position_method(model, cfg.method)
    return model


def vision_module(model) -> torch.nn.Module:
    """The vision tower incl. its merger (``model.model.visual`` in transformers 5, ``model.visual`` in 4)."""
    model = unwrap(model)
    if hasattr(model, "get_base_model"):  # peft
        model = model.get_base_model()
    for owner in (getattr(model, "model", None), model):
        visual = getattr(owner, "visual", None) if owner is not None else None
        if isinstance(visual, torch.nn.Module):
            return visual
    raise ValueError("the model has no 'visual' module: not a Qwen2-VL family model")


def freeze_vision(model) -> ParamCounts:
    """Freeze the vision tower and merger; everything else (the LLM backbone) trains."""
    visual = vision_module(model)
    vision_ids = {id(p) for p in visual.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) not in vision_ids)
    return count_params(model)


def count_params(model) -> ParamCounts:
    visual = vision_module(model)
    vision_ids = {id(p) for p in visual.parameters()}
    seen: set[int] = set()
    trainable = frozen = vision = language = 0
    for p in model.parameters():
        if id(p) in seen:
            continue  # tied weights count once
        seen.add(id(p))
        n = p.numel()
        if p.requires_grad:
            trainable += n
        else:
            frozen += n
        if id(p) in vision_ids:
            vision += n
        else:
            language += n
    return ParamCounts(trainable=trainable, frozen=frozen, vision=vision, language=language)


def add_lora(model, cfg: TrainConfig):
    """Wrap with peft LoRA on the language model only (the regex keeps the ViT untouched)."""
    from peft import LoraConfig, get_peft_model

    targets = "|".join(cfg.lora_targets)
    lora = LoraConfig(
        r=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=rf"^(?!.*\bvisual\b).*\.({targets})$",
        bias="none",
    )
    return get_peft_model(model, lora)


def enable_gradient_checkpointing(model) -> None:
    """Non-reentrant activation checkpointing (works with frozen embeddings, LoRA and DDP)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    for c in (model.config, getattr(model.config, "text_config", None)):
        if c is not None and hasattr(c, "use_cache"):
            c.use_cache = False


def unwrap(model):
    """The bare model under DDP / DeepSpeed engine wrappers (peft stays)."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    return model


def merged_for_export(model):
    """A plain transformers model: LoRA merged into the weights (eval loads it with from_pretrained)."""
    model = unwrap(model)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    return model


def weights_fingerprint(model_or_state: Any) -> str:
    """Content hash of a model's weights (state_dict, sorted by name).

    Used to prove where a stage started: the 32k run's initial weights must hash exactly like
    the 8k run's final checkpoint.
    """
    state = model_or_state.state_dict() if hasattr(model_or_state, "state_dict") else model_or_state
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(state):
        t = state[name].detach()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().view(torch.uint8).cpu().numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def trainable_state(model) -> dict[str, torch.Tensor]:
    """Trainable parameters by name (the part of the model that a saved state must restore)."""
    return {n: p.detach() for n, p in unwrap(model).named_parameters() if p.requires_grad}


def load_trainable_state(model, state: dict[str, torch.Tensor]) -> None:
    params = {n: p for n, p in unwrap(model).named_parameters() if p.requires_grad}
    if set(params) != set(state):
        missing, extra = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        raise ValueError(f"saved state does not match the model: missing {missing[:5]}, unexpected {extra[:5]}")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(state[n].to(p.device, p.dtype))


def save_processor(model_path: str, out: Path) -> None:
    """Processor/tokenizer files beside the weights so ``load_processor(out)`` works."""
    from training.processor import load_processor

    load_processor(model_path).save_pretrained(out)
