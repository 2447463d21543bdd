"""Keeping packed samples apart in attention (isolated mode), on every backend we have.

A packed sequence in isolated mode must attend block-diagonally: each token sees the earlier
tokens of its own sample only. transformers 5.x (5.17 and 5.23) recognises packing from the
*text* position row: when Qwen2-VL gets 4-row ``position_ids`` (text row first, then the
three M-RoPE rows), no ``attention_mask`` and no KV cache, it

* builds a block-diagonal causal mask for ``sdpa`` / ``eager`` (an L x L tensor: fine up to a
  few thousand tokens, 16 GiB of booleans at 128K);
* runs flash-attention's varlen kernel with ``cu_seqlens`` derived from that row
  (``flash_attention_2``, when flash-attn is installed: memory linear in L).

Qwen2-VL does not accept ``flex_attention`` in transformers (it refuses the implementation at
load), so for long isolated sequences without flash-attn this module registers its own
attention implementation, ``giraffe_packed``: SDPA run per sample segment with
``is_causal=True`` (no mask tensor at all; on a GPU each segment uses SDPA's flash/efficient
kernels), segments read from the same text row. It falls back to plain SDPA for anything
that is not a packed training forward (a mask given, a cache, batch > 1).

Which to use: :func:`choose_attn_implementation`. What to pass: :func:`isolated_attention_kwargs`.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch
import torch.nn.functional as F

from training.positions.packed import PackedPositions

PACKED_ATTENTION = "giraffe_packed"
FLASH_IMPLEMENTATIONS = ("flash_attention_2", "flash_attention_3", "flash_attention_4")


def _segments(position_ids: torch.Tensor | None, length: int) -> list[tuple[int, int]]:
    """Sample segments of a (1, L) text position row: a new one wherever the step is not +1
    (transformers' ``find_packed_sequence_indices`` rule)."""
    if position_ids is None:
        return [(0, length)]
    pos = position_ids.reshape(-1)
    if pos.numel() != length:
        return [(0, length)]
    step = torch.diff(pos)
    starts = [0] + (torch.nonzero(step != 1).flatten() + 1).tolist()
    return list(zip(starts, starts[1:] + [length]))


def packed_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    position_ids: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: per-segment SDPA; inputs (1, heads, L, d), output (1, L, heads, d)."""
    causal = getattr(module, "is_causal", True) if is_causal is None else is_causal
    batch, _, q_len, _ = query.shape
    if attention_mask is not None or batch != 1 or key.shape[2] != q_len:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    gqa = query.shape[1] != key.shape[1]
    outs = [
        F.scaled_dot_product_attention(
            query[:, :, a:b], key[:, :, a:b], value[:, :, a:b],
            dropout_p=dropout, is_causal=causal and b - a > 1, scale=scaling, enable_gqa=gqa,
        )
        for a, b in _segments(position_ids if causal else None, q_len)
    ]
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
    return out.transpose(1, 2).contiguous(), None


def register_packed_attention() -> str:
    """Register ``giraffe_packed`` with transformers' ``AttentionInterface`` (idempotent);
    load or switch a model with ``attn_implementation=`` the returned name."""
    from transformers import AttentionInterface

    AttentionInterface.register(PACKED_ATTENTION, packed_attention_forward)
    return PACKED_ATTENTION


def flash_attn_available() -> bool:
    """flash-attn importable and a CUDA device present (its varlen kernel is CUDA-only)."""
    return torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None


def choose_attn_implementation(mode: str = "isolated", device: str | torch.device | None = None) -> str:
    """``flash_attention_2`` where flash-attn runs; else ``giraffe_packed`` for isolated packing
    (registered here) and ``sdpa`` for concat (one causal sequence needs nothing more)."""
    on_cuda = torch.device(device).type == "cuda" if device is not None else torch.cuda.is_available()
    if on_cuda and flash_attn_available():
        return "flash_attention_2"
    return register_packed_attention() if mode == "isolated" else "sdpa"


def block_diagonal_causal_mask(cu_seqlens: torch.Tensor, attn_implementation: str = "sdpa",
                               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(1, 1, L, L) mask letting each token see only earlier tokens of its own sample.

    Bool (True = attend) for sdpa; additive (0 / dtype min) for eager. O(L^2) memory: for
    tests and short stages, not for 128K.
    """
    lengths = cu_seqlens.diff().long()
    seg = torch.repeat_interleave(torch.arange(lengths.numel()), lengths)
    idx = torch.arange(seg.numel())
    allowed = (seg[:, None] == seg[None, :]) & (idx[:, None] >= idx[None, :])
    if attn_implementation == "eager":
        return torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)[None, None]
    return allowed[None, None]


def isolated_attention_kwargs(positions: PackedPositions, attn_implementation: str = "sdpa",
                              explicit_mask: bool = False, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """``position_ids``, ``attention_mask`` and ``use_cache`` that make a Qwen2-VL forward keep
    the samples of ``positions`` apart (isolated) or treat them as one dialogue (concat).

    Default, for every implementation: the 4-row ``position_ids`` of
    :meth:`PackedPositions.model_position_ids` and no mask; transformers (or ``giraffe_packed``)
    reads the samples from the text row, and flash-attention's ``cu_seqlens`` derived from it
    equal ``positions.cu_seqlens`` (tested). ``explicit_mask=True`` (sdpa/eager only) passes
    our own 4D block-diagonal mask with the 3 M-RoPE rows instead.

    ``use_cache=False`` is part of the answer, not an optimisation: transformers only looks for
    packing when no KV cache exists, and an eval-mode forward creates one by default, which
    silently gives full causal attention across samples (tested).
    """
    if positions.mode == "concat":
        return {"position_ids": positions.model_position_ids(), "attention_mask": None, "use_cache": False}
    if explicit_mask:
        if attn_implementation not in ("sdpa", "eager"):
            raise ValueError(f"explicit 4D masks are for sdpa/eager, not {attn_implementation!r}")
        return {
            "position_ids": positions.position_ids.unsqueeze(1),
            "attention_mask": block_diagonal_causal_mask(positions.cu_seqlens, attn_implementation, dtype),
            "use_cache": False,
        }
    return {"position_ids": positions.model_position_ids(), "attention_mask": None, "use_cache": False}
