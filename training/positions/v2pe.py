"""V2PE (Variable Visual Position Encoding) as a position-id rule, 1D and M-RoPE.

V2PE leaves the rotary frequencies alone and changes the positions instead: a text token
advances the position by 1, a visual token by a ``delta < 1``, so a long run of image or video
tokens spends less of the model's positional range. After a visual block the next text token
sits at ``ceil(last visual position) + 1``, which keeps every text position an integer. In
training delta is drawn per image from ``{1, 1/2, 1/4, ..., 1/256}`` (seeded here); at
inference it is fixed (default 1/4). Positions are floats; the rotary module multiplies them
by ``inv_freq`` directly, so no integer rounding is involved.

**1D layout** (plain RoPE, the paper's rule): with ``p`` the position of the token before a
visual block of ``n`` tokens, the block gets ``p + delta * k`` for ``k = 1 .. n`` and the next
text token ``ceil(p + delta * n) + 1``. With ``delta = 1`` this is ``0, 1, 2, ...``.

**M-RoPE layout** (Qwen2-VL's 3 x seq position ids; our combination, not in either paper):
a visual block has per-token offsets ``(o_t, o_h, o_w)`` from its grid (``o_t`` the temporal
index, times Qwen2.5-VL's time interval for videos; ``o_h``, ``o_w`` the merged row and
column). Stock Qwen2-VL places the token at ``P + o`` on each row, with ``P = p + 1`` the
block start. V2PE scales the offsets *and* the step into the block by delta::

    position_row = p + delta * (1 + o_row)          for row in (t, h, w)
    next text    = ceil(max over the block's three rows) + 1

so a block is compressed by delta along every axis, and if the three offsets of a block were
all the token index (a 1 x 1 x n grid read as a line) this is exactly the 1D rule. With
``delta = 1`` it is the stock layout. Text tokens keep the same position on all three rows.

Limits, stated so nobody is surprised:

* ``next text = max + 1`` over all three rows is the rule of the original Qwen2-VL release.
  transformers 5.x's ``get_rope_index`` advances by ``max(h, w)`` only, ignoring the temporal
  extent; the two agree for every image and for videos with ``T <= max(H, W)`` merged grid
  units, and differ for longer videos (ours never lets text reuse a video's temporal
  positions).
* Positions are float32 in the rotary module (transformers casts them), so the fractional
  part of ``p + k / 256`` is exact only while ``p < 2 ** 16``; with delta 1/4 up to ``2 ** 22``.
* Training draws one delta per visual block (an image, or a whole video), from a
  ``random.Random(seed)`` stream; the order of draws follows the batch order.
* M-RoPE layout: adjacent visual tokens of one modality are split into blocks by their
  grids (each covers ``t * h * w / merge ** 2`` tokens), so back-to-back images are separate
  blocks. The 1D function has no grids and treats each run of visual tokens as one block.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from itertools import groupby
from typing import Any

import torch

V2PE_TRAIN_DELTAS: tuple[float, ...] = tuple(1.0 / 2**k for k in range(9))  # 1 .. 1/256

TEXT, IMAGE, VIDEO = 0, 1, 2  # transformers' mm_token_type_ids values


@dataclass(frozen=True)
class V2PEConfig:
    """Delta at inference, the set drawn from in training, and the seed of those draws."""

    inference_delta: float = 0.25
    train_deltas: tuple[float, ...] = V2PE_TRAIN_DELTAS
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_deltas", tuple(float(d) for d in self.train_deltas))
        for d in (self.inference_delta, *self.train_deltas):
            if not 0 < d <= 1:
                raise ValueError(f"V2PE deltas must lie in (0, 1], got {d}")
        if not self.train_deltas:
            raise ValueError("train_deltas must not be empty")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["train_deltas"] = list(self.train_deltas)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> V2PEConfig:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: (tuple(v) if k == "train_deltas" else v) for k, v in data.items() if k in known})


class DeltaSampler:
    """Yields one delta per visual block: a seeded draw in training, the fixed one otherwise."""

    def __init__(self, config: V2PEConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)

    def draw(self, training: bool) -> float:
        return self._rng.choice(self.config.train_deltas) if training else self.config.inference_delta


DeltaSource = float | Sequence[float] | Callable[[], float]


def _delta_stream(delta: DeltaSource) -> Callable[[], float]:
    """One call per visual block: a constant, the next of a sequence, or a callable."""
    if callable(delta):
        return delta
    if isinstance(delta, (int, float)):
        value = float(delta)
        return lambda: value
    it = iter(delta)

    def nxt() -> float:
        try:
            return float(next(it))
        except StopIteration:
            raise ValueError("fewer deltas than visual blocks") from None

    return nxt


def _ceil(x: float) -> float:
    """ceil, robust to float noise from non-dyadic deltas (2.0000000001 -> 2)."""
    return float(math.ceil(x - 1e-9))


def _runs(token_types: Sequence[int]) -> list[tuple[int, int]]:
    """(type, length) of each maximal run of equal token types."""
    return [(int(k), sum(1 for _ in g)) for k, g in groupby(int(t) for t in token_types)]


def v2pe_positions_1d(token_types: Sequence[int], delta: DeltaSource, dtype=torch.float32) -> torch.Tensor:
    """1D V2PE positions for one sequence; each run of visual tokens is one block."""
    next_delta = _delta_stream(delta)
    prev = -1.0  # position of the token before the current one
    out: list[float] = []
    for kind, n in _runs(token_types):
        if kind == TEXT:
            out += [prev + k for k in range(1, n + 1)]
            prev += n
        else:
            d = next_delta()
            out += [prev + d * k for k in range(1, n + 1)]
            prev = _ceil(prev + d * n)
    return torch.tensor(out, dtype=torch.float64).to(dtype)


def _grid_offsets(grid_thw: Sequence[int], spatial_merge_size: int, time_interval: float) -> torch.Tensor:
    """(3, t*h*w) offsets (o_t, o_h, o_w) of a block, in the processor's token order."""
    t, h, w = int(grid_thw[0]), int(grid_thw[1]) // spatial_merge_size, int(grid_thw[2]) // spatial_merge_size
    ot = torch.floor(torch.arange(t, dtype=torch.float64) * time_interval)
    oh = torch.arange(h, dtype=torch.float64)
    ow = torch.arange(w, dtype=torch.float64)
    return torch.stack(torch.meshgrid(ot, oh, ow, indexing="ij"), dim=0).reshape(3, -1)


def v2pe_mrope_positions(
    token_types: Sequence[int],
    image_grids: Iterable[Sequence[int]] = (),
    video_grids: Iterable[Sequence[int]] = (),
    delta: DeltaSource = 1.0,
    spatial_merge_size: int = 2,
    video_time_intervals: Iterable[float] | None = None,
    dtype=torch.float32,
) -> tuple[torch.Tensor, int]:
    """M-RoPE V2PE positions (3, n) for one sequence and the position the next token gets.

    ``image_grids`` / ``video_grids`` are the processor's ``*_grid_thw`` rows (before the
    spatial merge), consumed in order as blocks appear; pass iterators to share them across
    the sequences of a batch. ``video_time_intervals`` (Qwen2.5-VL: tokens_per_second *
    second_per_grid_t) scales the temporal offsets of videos; Qwen2-VL uses 1.
    """
    next_delta = _delta_stream(delta)
    grids: dict[int, Iterator[Sequence[int]]] = {IMAGE: iter(image_grids), VIDEO: iter(video_grids)}
    intervals = iter(video_time_intervals) if video_time_intervals is not None else None
    merge_area = spatial_merge_size**2
    prev = -1.0
    pieces: list[torch.Tensor] = []
    for kind, n in _runs(token_types):
        if kind == TEXT:
            pieces.append((prev + torch.arange(1, n + 1, dtype=torch.float64)).expand(3, -1))
            prev += n
            continue
        if kind not in grids:
            raise ValueError(f"unknown token type {kind}")
        left = n
        while left > 0:
            try:
                grid = next(grids[kind])
            except StopIteration:
                raise ValueError(f"more {'image' if kind == IMAGE else 'video'} tokens than grids") from None
            interval = 1.0
            if kind == VIDEO and intervals is not None:
                interval = float(next(intervals))
            offsets = _grid_offsets(grid, spatial_merge_size, interval)
            size = int(grid[0]) * int(grid[1]) * int(grid[2]) // merge_area
            if size <= 0:
                raise ValueError(f"grid {list(grid)} has no tokens after the {spatial_merge_size}x merge")
            if size > left:
                raise ValueError(f"a grid of {size} tokens does not fit the {left} visual tokens left in a run")
            d = next_delta()
            block = prev + d * (1 + offsets)
            pieces.append(block)
            prev = _ceil(block.max().item())
            left -= size
    positions = torch.cat(pieces, dim=1) if pieces else torch.zeros(3, 0, dtype=torch.float64)
    return positions.to(dtype), int(prev) + 1
