"""The training loss: next-token cross-entropy on labelled tokens, without S x V logits.

Why not the model's own ``labels=`` loss: transformers computes logits for every position and
upcasts them to float32 before the loss. With Qwen2-VL's 151,936-token vocabulary that is
0.6 MB per token: 20 GB at 32K and 80 GB at 128K for one packed sequence, more than the
model. Here the logits are only computed for positions that carry a label (assistant turns;
a long-document sample is mostly unlabelled prompt), in chunks, under activation checkpointing,
so at most ``chunk_size x V`` logits exist at once. The value equals the model's own loss
(mean over labelled tokens; tested).

:class:`CausalLMLoss` is the module DDP / DeepSpeed wrap, so their hooks see the whole
forward. With Ulysses sequence parallelism (``sp_group``) every rank of the group builds the
full-length embeddings and M-RoPE positions (the vision tower and ``get_rope_index`` need the
whole sequence), then a pre-hook hands the language model only this rank's slice; DeepSpeed's
``UlyssesSPAttentionHF`` exchanges heads for sequence inside attention, and the per-rank loss
sums are combined with a differentiable all-reduce (the same gradients as transformers' own
SP loss, which all-gathers).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from training.modeling import unwrap

IGNORE = -100


def hf_model(model):
    """The transformers model under DDP/DeepSpeed/peft wrappers."""
    model = unwrap(model)
    if isinstance(model, CausalLMLoss):
        model = model.model
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


def shift_labels(labels: torch.Tensor) -> torch.Tensor:
    """Label of position i is the token at i + 1 (-100 after the last one)."""
    return F.pad(labels, (0, 1), value=IGNORE)[..., 1:]


def _chunk_ce(hidden: torch.Tensor, head: torch.nn.Module, targets: torch.Tensor) -> torch.Tensor:
    logits = head(hidden).float()
    return F.cross_entropy(logits, targets, reduction="sum")


def labelled_ce_sum(hidden: torch.Tensor, head: torch.nn.Module, targets: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """Sum of cross-entropy over positions whose target is not -100 (hidden: [B, S, H])."""
    keep = targets != IGNORE
    h = hidden[keep]
    t = targets[keep]
    total = hidden.new_zeros((), dtype=torch.float32)
    if t.numel() == 0:
        return total + 0.0 * hidden.sum()  # keeps the graph connected on an all-prompt shard
    for start in range(0, t.numel(), chunk_size):
        hs, ts = h[start : start + chunk_size], t[start : start + chunk_size]
        if torch.is_grad_enabled():
            total = total + checkpoint(_chunk_ce, hs, head, ts, use_reentrant=False)
        else:
            total = total + _chunk_ce(hs, head, ts)
    return total


class CausalLMLoss(torch.nn.Module):
    """``forward(**batch) -> loss`` (mean over labelled tokens) for a Qwen2-VL style model."""

    def __init__(self, model, chunk_size: int = 4096, sp_group=None) -> None:
        super().__init__()
        self.model = model
        self.chunk_size = chunk_size
        self.sp_group = sp_group
        self.last_label_tokens = 0

    def forward(self, **batch: Any) -> torch.Tensor:
        labels = batch.pop("labels")
        if not self.chunk_size:  # the model's own loss (full logits): for parity checks
            return self.model(**batch, labels=labels, use_cache=False).loss
        base = hf_model(self.model)
        inner, head = base.model, base.lm_head
        targets = shift_labels(labels)
        batch.setdefault("use_cache", False)
        if self.sp_group is None:
            hidden = inner(**batch).last_hidden_state
            total = labelled_ce_sum(hidden, head, targets, self.chunk_size)
            count = (targets != IGNORE).sum()
            self.last_label_tokens = int(count)
            return total / count.clamp(min=1)
        return self._sequence_parallel(inner, head, batch, targets, base)

    # -- Ulysses ------------------------------------------------------------------------------

    def _sequence_parallel(self, inner, head, batch, targets, base) -> torch.Tensor:
        import torch.distributed as dist

        sp = dist.get_world_size(self.sp_group)
        rank = dist.get_rank(self.sp_group)
        pad_id = getattr(getattr(base.config, "text_config", base.config), "pad_token_id", None) or 0
        batch, targets = pad_to_multiple(batch, targets, sp, pad_id)
        seq = batch["input_ids"].shape[1]
        a, b = rank * seq // sp, (rank + 1) * seq // sp

        def take_slice(_module, args, kwargs):
            kwargs["inputs_embeds"] = kwargs["inputs_embeds"][:, a:b]
            pos = kwargs.get("position_ids")
            if pos is None:  # text only: the model would count 0..S-1 on every axis
                emb = kwargs["inputs_embeds"]
                pos = torch.arange(seq, device=emb.device).expand(3, emb.shape[0], seq)
            if pos.shape[0] == 3:  # add the text row the attention wrapper gathers (concat: 0..S-1)
                text = torch.arange(seq, device=pos.device, dtype=pos.dtype).expand(1, pos.shape[1], seq)
                pos = torch.cat([text, pos], dim=0)
            kwargs["position_ids"] = pos[..., a:b]
            kwargs["attention_mask"] = None  # Ulysses masks causally from positions; 4-D masks are dropped
            return args, kwargs

        handle = inner.language_model.register_forward_pre_hook(take_slice, with_kwargs=True)
        try:
            hidden = inner(**batch).last_hidden_state
        finally:
            handle.remove()
        local_targets = targets[:, a:b]
        local_sum = labelled_ce_sum(hidden, head, local_targets, self.chunk_size)
        count = (local_targets != IGNORE).sum().to(local_sum.dtype)
        dist.all_reduce(count, group=self.sp_group)  # labelled tokens of the whole sequence
        total = _AllReduceSum.apply(local_sum, self.sp_group)
        self.last_label_tokens = int(count)
        return total / count.clamp(min=1)


class _AllReduceSum(torch.autograd.Function):
    """Sum over the group, differentiable: every rank holds the same total and back-propagates
    it, so a rank's share receives the sum of all ranks' gradients (as with all_gather)."""

    @staticmethod
    def forward(ctx, value: torch.Tensor, group) -> torch.Tensor:
        import torch.distributed as dist

        ctx.group = group
        out = value.clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        import torch.distributed as dist

        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


def pad_to_multiple(batch: dict[str, Any], targets: torch.Tensor, multiple: int, pad_id: int):
    """Right-pad a batch-1 sequence so it splits evenly over ``multiple`` ranks (pads carry no label)."""
    seq = batch["input_ids"].shape[1]
    extra = (-seq) % multiple
    if not extra:
        return batch, targets
    out = dict(batch)
    out["input_ids"] = F.pad(batch["input_ids"], (0, extra), value=pad_id)
    mask = batch.get("attention_mask")
    if mask is None:
        mask = torch.ones_like(batch["input_ids"])
    out["attention_mask"] = F.pad(mask, (0, extra), value=0)
    if batch.get("mm_token_type_ids") is not None:
        out["mm_token_type_ids"] = F.pad(batch["mm_token_type_ids"], (0, extra), value=0)
    if batch.get("position_ids") is not None:
        pos = batch["position_ids"]
        out["position_ids"] = F.pad(pos, (0, extra), value=0)
    return out, F.pad(targets, (0, extra), value=IGNORE)
