"""M-RoPE position ids for a packed sequence, in both attention modes.

A packed sequence holds several samples back to back. Qwen2-VL places every token on three
position rows (temporal, height, width) with the rule of transformers' ``get_rope_index``:

* a text token advances the position by 1 (same value on all three rows);
* a visual block (one contiguous run of image or video pad tokens, one ``*_grid_thw`` row)
  starts at the current position ``P`` (the position after the text before it) and puts the
  token at grid cell ``(t, h, w)`` (after the 2x2 spatial merge) at ``(P + t, P + h, P + w)``;
* the next text token after the block gets ``P + max(H, W)`` (merged grid sides).

The last point is transformers 5.x's rule (5.17 and 5.23 agree); the original Qwen2-VL code
used ``max over the block + 1`` = ``P + max(T, H, W)``. Both agree for every image and every
video with ``T <= max(H, W)``; parity tests compare with transformers, so this module follows
transformers. (training/positions/v2pe.py keeps the original rule, see its docstring.)

Two modes:

* ``concat`` (the paper's multi-turn dialogue): positions continue across samples; the result
  equals ``get_rope_index`` on the whole concatenated token sequence;
* ``isolated``: positions restart at 0 for every sample (each slice equals ``get_rope_index``
  on that sample alone), plus ``cu_seqlens`` (int32) for varlen attention and a text
  position row that restarts per sample, which is how transformers 5.x recognises a packed
  sequence (see :func:`PackedPositions.model_position_ids`).

The stock rule is vectorised with numpy over the whole sequence (one pass, no Python loop
over blocks), so a 128K-token sequence with thousands of visual blocks takes milliseconds.
V2PE (float positions, a delta drawn per visual block in training) reuses
``training.positions.v2pe.v2pe_mrope_positions`` per sample (isolated) or over the sequence (concat).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from training.positions.apply import V2PERopeIndex, _rope_index_owners, as_position_method
from training.positions.v2pe import IMAGE, TEXT, VIDEO, DeltaSampler, V2PEConfig, v2pe_mrope_positions

MODES = ("concat", "isolated")


def _grid_array(grids: Any) -> np.ndarray:
    """Grid rows as an (n, 3) int64 array (accepts None, lists, numpy or torch)."""
    if grids is None:
        return np.zeros((0, 3), dtype=np.int64)
    if isinstance(grids, torch.Tensor):
        grids = grids.detach().cpu().numpy()
    arr = np.asarray(grids, dtype=np.int64)
    if arr.size == 0:
        return np.zeros((0, 3), dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"grid rows must have shape (n, 3), got {arr.shape}")
    return arr


def _types_array(token_types: Any) -> np.ndarray:
    if isinstance(token_types, torch.Tensor):
        token_types = token_types.detach().cpu().numpy()
    arr = np.asarray(token_types, dtype=np.int64).reshape(-1)
    bad = ~np.isin(arr, (TEXT, IMAGE, VIDEO))
    if bad.any():
        raise ValueError(f"unknown token type {int(arr[bad][0])} at index {int(np.flatnonzero(bad)[0])}")
    return arr


def stock_mrope_positions(
    token_types: Any,
    image_grids: Any = None,
    video_grids: Any = None,
    *,
    spatial_merge_size: int = 2,
    sample_starts: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """(3, n) int64 positions with transformers' ``get_rope_index`` rule, vectorised.

    ``token_types`` is ``mm_token_type_ids`` (0 text, 1 image, 2 video); grids are consumed in
    order, one per contiguous visual run, exactly as transformers does. ``sample_starts``
    (token indices, first 0) restarts the positions at 0 at each start: isolated packing in
    one pass. Raises ``ValueError`` when the runs and grids disagree (count or size), which
    transformers would silently turn into wrong positions.
    """
    types = _types_array(token_types)
    n = types.size
    if n == 0:
        return np.zeros((3, 0), dtype=np.int64)
    m = int(spatial_merge_size)
    boundary = np.zeros(n, dtype=bool)
    boundary[0] = True
    boundary[1:] = types[1:] != types[:-1]
    if sample_starts is not None:
        starts = np.asarray(sample_starts, dtype=np.int64)
        if starts.size and (starts[0] != 0 or (np.diff(starts) <= 0).any() or starts[-1] >= n):
            raise ValueError(f"sample starts must begin at 0 and increase inside the sequence, got {starts[:8]}...")
        boundary[starts] = True
    run_starts = np.flatnonzero(boundary)
    run_lens = np.diff(np.append(run_starts, n))
    run_types = types[run_starts]
    n_runs = run_starts.size

    # merged grid sides per run (text runs keep 1 x 1 x len so the formulas below stay valid)
    gt = np.ones(n_runs, dtype=np.int64)
    gh = np.ones(n_runs, dtype=np.int64)
    gw = np.ones(n_runs, dtype=np.int64)
    for kind, grids, name in ((IMAGE, image_grids, "image"), (VIDEO, video_grids, "video")):
        g = _grid_array(grids)
        idx = np.flatnonzero(run_types == kind)
        if idx.size != g.shape[0]:
            raise ValueError(f"{idx.size} {name} blocks in the sequence but {g.shape[0]} {name} grid rows")
        if idx.size:
            gt[idx], gh[idx], gw[idx] = g[:, 0], g[:, 1] // m, g[:, 2] // m
            want = gt[idx] * gh[idx] * gw[idx]
            wrong = np.flatnonzero(want != run_lens[idx])
            if wrong.size:
                k = int(wrong[0])
                raise ValueError(
                    f"{name} block {k} has {int(run_lens[idx][k])} tokens but its grid {g[k].tolist()} "
                    f"gives {int(want[k])} after the {m}x{m} merge"
                )
    is_text_run = run_types == TEXT
    advance = np.where(is_text_run, run_lens, np.maximum(gh, gw))
    start = np.cumsum(advance) - advance  # exclusive prefix sum
    if sample_starts is not None and len(sample_starts):
        is_start = np.zeros(n, dtype=bool)
        is_start[np.asarray(sample_starts, dtype=np.int64)] = True
        opens = is_start[run_starts]  # runs that open a sample
        start = start - start[np.flatnonzero(opens)][np.cumsum(opens) - 1]

    run_id = np.repeat(np.arange(n_runs), run_lens)
    k = np.arange(n, dtype=np.int64) - run_starts[run_id]
    base = start[run_id]
    h = gh[run_id]
    w = gw[run_id]
    text = is_text_run[run_id]
    out = np.empty((3, n), dtype=np.int64)
    out[0] = base + np.where(text, k, k // (h * w))
    out[1] = base + np.where(text, k, (k // w) % h)
    out[2] = base + np.where(text, k, k % w)
    return out


# -- position rules: how one segment of tokens gets its (3, n) positions -----------------------


class PositionRule(Protocol):
    """Turns token types (+ grids) into positions; ``spatial_merge_size`` is the model's."""

    spatial_merge_size: int

    def __call__(self, token_types: np.ndarray, image_grids: np.ndarray, video_grids: np.ndarray,
                 sample_starts: np.ndarray | None = None) -> torch.Tensor: ...


@dataclass
class StockMRoPE:
    """Stock Qwen2-VL positions (int64): transformers' rule, vectorised."""

    spatial_merge_size: int = 2

    def __call__(self, token_types, image_grids, video_grids, sample_starts=None) -> torch.Tensor:
        return torch.from_numpy(
            stock_mrope_positions(token_types, image_grids, video_grids,
                                  spatial_merge_size=self.spatial_merge_size, sample_starts=sample_starts)
        )


@dataclass
class V2PEMRoPE:
    """V2PE positions (float32) from ``training.positions.v2pe``: one delta per visual block.

    ``draw`` yields the delta of the next block (``DeltaSampler.draw(training)`` bound to a
    training flag, or the model's own sampler through :func:`position_rule_for_model`, so the
    collator and the model share one seeded stream). Isolated packing calls the V2PE function
    once per sample, sharing the grid iterators, so each sample restarts at 0.
    """

    draw: Callable[[], float]
    spatial_merge_size: int = 2

    def __call__(self, token_types, image_grids, video_grids, sample_starts=None) -> torch.Tensor:
        types = _types_array(token_types)
        images = iter(_grid_array(image_grids).tolist())
        videos = iter(_grid_array(video_grids).tolist())
        bounds = [0, types.size] if sample_starts is None else [*np.asarray(sample_starts).tolist(), types.size]
        pieces = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            pos, _ = v2pe_mrope_positions(types[a:b].tolist(), images, videos, delta=self.draw,
                                          spatial_merge_size=self.spatial_merge_size)
            pieces.append(pos)
        for it, name in ((images, "image"), (videos, "video")):
            if next(it, None) is not None:
                raise ValueError(f"more {name} grid rows than {name} blocks in the sequence")
        return torch.cat(pieces, dim=1) if pieces else torch.zeros(3, 0)


def position_rule_from_method(method=None, *, training: bool = True, spatial_merge_size: int = 2) -> PositionRule:
    """The rule for a position method (``PositionMethodConfig``, its dict, or None = stock).

    Frequency methods (PI, NTK, YaRN, M-RoPE++, ...) change ``inv_freq`` only, so they use the
    stock positions; V2PE gets its own seeded sampler (``V2PEConfig.seed``), drawing in
    training and fixed at ``inference_delta`` otherwise.
    """
    v2pe = None
    if isinstance(method, V2PEConfig):
        v2pe = method
    elif method is not None:
        v2pe = as_position_method(method).v2pe
    if v2pe is None:
        return StockMRoPE(spatial_merge_size)
    sampler = DeltaSampler(v2pe)
    return V2PEMRoPE(lambda: sampler.draw(training), spatial_merge_size)


def position_rule_for_model(model) -> PositionRule:
    """The rule the model itself uses: V2PE (sharing the model's sampler and its ``training``
    flag) when ``apply_position_method`` patched its ``get_rope_index``, else stock."""
    merge = int(getattr(getattr(model.config, "vision_config", None), "spatial_merge_size", 2))
    for owner in _rope_index_owners(model):
        index = owner.__dict__.get("get_rope_index")
        if isinstance(index, V2PERopeIndex):
            return V2PEMRoPE(lambda: index.sampler.draw(bool(index.owner.training)), index.spatial_merge_size)
    return StockMRoPE(merge)


# -- packed sequences ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PackedPositions:
    """Positions of one packed sequence and what the attention needs to keep samples apart.

    ``position_ids`` (3, L): M-RoPE rows. ``text_position_ids`` (L,): 0..len-1 per sample in
    isolated mode, 0..L-1 in concat mode. ``cu_seqlens`` int32 (n+1,): sample boundaries
    (flash-attn varlen's format); ``max_seqlen`` the longest sample.
    """

    position_ids: torch.Tensor
    text_position_ids: torch.Tensor
    cu_seqlens: torch.Tensor
    max_seqlen: int
    mode: str

    @property
    def boundaries(self) -> list[tuple[int, int]]:
        c = self.cu_seqlens.tolist()
        return list(zip(c[:-1], c[1:]))

    @property
    def sample_index(self) -> torch.Tensor:
        """(L,) int64: which sample each token belongs to."""
        lengths = self.cu_seqlens.diff().long()
        return torch.repeat_interleave(torch.arange(lengths.numel()), lengths)

    def model_position_ids(self) -> torch.Tensor:
        """What to pass as ``position_ids`` to a Qwen2-VL forward (batch of one sequence).

        concat: (3, 1, L). isolated: (4, 1, L) with the per-sample text row first: transformers
        5.x's Qwen2-VL text model splits row 0 off as ``text_position_ids`` and, with
        ``attention_mask=None``, derives the packed (block-diagonal causal) mask from it for
        sdpa/eager/flex, and flash-attention its varlen ``cu_seqlens``.
        """
        if self.mode == "concat":
            return self.position_ids.unsqueeze(1)
        rows = torch.cat([self.text_position_ids.to(self.position_ids.dtype).unsqueeze(0), self.position_ids])
        return rows.unsqueeze(1)


def cu_seqlens_from_lengths(lengths: Sequence[int]) -> torch.Tensor:
    lens = torch.as_tensor(list(lengths), dtype=torch.int64)
    if (lens <= 0).any():
        raise ValueError(f"sample lengths must be positive, got {lens.tolist()}")
    return torch.nn.functional.pad(torch.cumsum(lens, 0), (1, 0)).to(torch.int32)


def packed_position_ids(
    token_types: Any,
    lengths: Sequence[int],
    image_grids: Any = None,
    video_grids: Any = None,
    mode: str = "isolated",
    rule: PositionRule | None = None,
) -> PackedPositions:
    """Positions of a packed sequence of samples with ``lengths`` (summing to L).

    Grids are the whole sequence's ``image_grid_thw`` / ``video_grid_thw`` rows in order.
    ``rule`` defaults to the stock Qwen2-VL rule; pass :func:`position_rule_for_model` (or
    :func:`position_rule_from_method`) for V2PE.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    types = _types_array(token_types)
    cu = cu_seqlens_from_lengths(lengths)
    if int(cu[-1]) != types.size:
        raise ValueError(f"sample lengths sum to {int(cu[-1])} but the sequence has {types.size} tokens")
    rule = rule or StockMRoPE()
    images, videos = _grid_array(image_grids), _grid_array(video_grids)
    lens = cu.diff().long()
    if mode == "concat":
        positions = rule(types, images, videos)
        text = torch.arange(types.size, dtype=torch.int64)
    else:
        starts = cu[:-1].numpy().astype(np.int64)
        positions = rule(types, images, videos, starts)
        text = torch.arange(types.size, dtype=torch.int64) - torch.repeat_interleave(cu[:-1].long(), lens)
    return PackedPositions(positions, text, cu, int(lens.max()), mode)
