"""Best-fit decreasing packing of sample lengths into fixed-capacity sequences (no Dagster).

Why best-fit decreasing (BFD): samples are placed longest first, each into the open sequence
with the *least* room that still takes it whole, else into a new sequence. Nothing is ever
cut; a sample longer than the capacity is left out (``bin_of == -1``) for the caller to send
to a longer stage or reject. BFD fills as tightly as LLaMA-Factory's greedy knapsack (which
is first-fit decreasing in disguise) but the greedy's ``list.pop`` makes it quadratic, while
here every placement is O(log C): open sequences are kept in buckets by remaining room
(0..C), and a segment tree over those buckets answers "smallest room >= length" in
~2 log2(C) steps. Sorting is a counting sort over lengths 1..C (O(n + C)), so packing 10M
samples is linear in the input, in time and memory.

Determinism: samples of equal length are placed in input order; among sequences with the same
room, the one that reached that room most recently is used (a stack per bucket). The numba
kernel and the pure-Python fallback (used only when numba cannot be imported, and checked
equal in tests) follow exactly these rules, so both give the same sequences.

A sample's ``offset`` is the number of tokens before it in its sequence; samples sit in
placement order (longest first), so offsets within a sequence increase in that order.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

try:  # numba is a dependency; the fallback keeps the package importable without it
    import numba

    HAVE_NUMBA = True
except Exception:  # pragma: no cover - exercised only where numba is missing
    numba = None
    HAVE_NUMBA = False


@dataclass(frozen=True)
class Packing:
    """Result of packing ``lengths`` into sequences of ``capacity`` tokens.

    ``bin_of[i]`` is sample i's sequence (numbered in the order they were opened) or -1 when
    the sample is longer than the capacity; ``offset[i]`` its first token in that sequence
    (-1 when not packed); ``bin_tokens[b]`` the tokens in sequence b (never above capacity).
    """

    capacity: int
    bin_of: np.ndarray
    offset: np.ndarray
    bin_tokens: np.ndarray

    @property
    def n_bins(self) -> int:
        return int(self.bin_tokens.shape[0])

    @property
    def tokens(self) -> int:
        """Tokens packed (samples that fit)."""
        return int(self.bin_tokens.sum())

    @property
    def n_rejected(self) -> int:
        """Samples longer than the capacity (left out, never cut)."""
        return int((self.bin_of < 0).sum())

    @property
    def fill(self) -> float:
        """tokens / (sequences * capacity); 1.0 for nothing packed (no wasted room)."""
        return self.tokens / (self.n_bins * self.capacity) if self.n_bins else 1.0

    @property
    def lower_bound(self) -> int:
        """ceil(tokens / capacity): no packing uses fewer sequences."""
        return -(-self.tokens // self.capacity)

    def bins(self) -> list[list[int]]:
        """Sample indices of each sequence in offset order (for tests and small inputs)."""
        out: list[list[int]] = [[] for _ in range(self.n_bins)]
        packed = np.flatnonzero(self.bin_of >= 0)
        for i in packed[np.lexsort((self.offset[packed], self.bin_of[packed]))]:
            out[int(self.bin_of[i])].append(int(i))
        return out


# The kernel keeps O(capacity) arrays (a segment tree and a stack head per room value).
MAX_CAPACITY = 1 << 24


def _check(lengths, capacity: int) -> np.ndarray:
    if int(capacity) != capacity or capacity < 1:
        raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
    if capacity > MAX_CAPACITY:
        raise ValueError(f"capacity {capacity} is above the supported {MAX_CAPACITY} tokens")
    arr = np.ascontiguousarray(np.asarray(lengths), dtype=np.int64)
    if arr.ndim != 1:
        raise ValueError(f"lengths must be one-dimensional, got shape {arr.shape}")
    if arr.size and int(arr.min()) < 1:
        bad = int(np.flatnonzero(arr < 1)[0])
        raise ValueError(f"lengths must be positive: sample {bad} has {int(arr[bad])} tokens")
    return arr


def pack(lengths, capacity: int, *, use_numba: bool | None = None) -> Packing:
    """Best-fit decreasing packing of integer ``lengths`` into sequences of ``capacity``.

    ``use_numba=None`` uses the compiled kernel when numba imports, else the fallback.
    Raises ValueError for non-positive lengths or capacity (a length of 0 is a bug upstream).
    """
    arr = _check(lengths, capacity)
    capacity = int(capacity)
    if use_numba is None:
        use_numba = HAVE_NUMBA
    if use_numba and not HAVE_NUMBA:
        raise RuntimeError("numba is not installed")
    n = arr.shape[0]
    bin_of = np.full(n, -1, dtype=np.int64)
    offset = np.full(n, -1, dtype=np.int64)
    if use_numba:
        order = _kernels()["order"](arr, capacity)
        bin_tokens = np.empty(order.shape[0], dtype=np.int64)
        n_bins = _kernels()["bfd"](arr, order, capacity, bin_of, offset, bin_tokens)
    else:
        order = _order_numpy(arr, capacity)
        bin_tokens = np.empty(order.shape[0], dtype=np.int64)
        n_bins = _bfd_python(arr, order, capacity, bin_of, offset, bin_tokens)
    return Packing(capacity, bin_of, offset, bin_tokens[:n_bins].copy())


# --- pure Python / numpy fallback -------------------------------------------------------


def _order_numpy(lengths: np.ndarray, capacity: int) -> np.ndarray:
    """Indices of samples that fit, longest first, equal lengths in input order."""
    fits = np.flatnonzero(lengths <= capacity)
    return fits[np.argsort(-lengths[fits], kind="stable")]


def _bfd_python(lengths, order, capacity, bin_of, offset, bin_tokens) -> int:
    """BFD with a sorted list of distinct rooms (bisect) and a stack of sequences per room."""
    rooms: list[int] = []  # sorted distinct rooms that have at least one open sequence
    stacks: dict[int, list[int]] = {}
    n_bins = 0
    for i in order.tolist():
        s = int(lengths[i])
        k = bisect.bisect_left(rooms, s)
        if k == len(rooms):
            b = n_bins
            n_bins += 1
            room = capacity
        else:
            room = rooms[k]
            stack = stacks[room]
            b = stack.pop()
            if not stack:
                del stacks[room]
                rooms.pop(k)
        bin_of[i] = b
        offset[i] = capacity - room
        room -= s
        bin_tokens[b] = capacity - room
        if room > 0:
            if room in stacks:
                stacks[room].append(b)
            else:
                stacks[room] = [b]
                bisect.insort(rooms, room)
    return n_bins


# --- numba kernels (compiled on first use, cached on disk) -----------------------------

_KERNELS: dict = {}


def _kernels() -> dict:
    if _KERNELS:
        return _KERNELS
    njit = numba.njit(cache=True, nogil=True)

    @njit
    def order_kernel(lengths, capacity):
        # Counting sort by decreasing length; a stable scatter keeps input order for ties.
        counts = np.zeros(capacity + 2, np.int64)
        n_fit = 0
        for i in range(lengths.shape[0]):
            v = lengths[i]
            if v <= capacity:
                counts[v] += 1
                n_fit += 1
        start = np.empty(capacity + 2, np.int64)
        pos = 0
        for v in range(capacity, 0, -1):
            start[v] = pos
            pos += counts[v]
        order = np.empty(n_fit, np.int64)
        for i in range(lengths.shape[0]):
            v = lengths[i]
            if v <= capacity:
                order[start[v]] = i
                start[v] += 1
        return order

    @njit
    def bfd_kernel(lengths, order, capacity, bin_of, offset, bin_tokens):
        size = 1
        while size < capacity + 1:
            size *= 2
        tree = np.zeros(2 * size, np.int64)  # leaf size+r: open sequences with room r
        head = np.full(capacity + 1, -1, np.int64)  # top of the stack of sequences with room r
        nxt = np.empty(order.shape[0], np.int64)
        n_bins = 0
        for k in range(order.shape[0]):
            i = order[k]
            s = lengths[i]
            # smallest room r >= s with an open sequence: climb to the first non-empty
            # right sibling, then descend to its leftmost non-empty leaf
            node = size + s
            found = tree[node] > 0
            if not found:
                while node > 1:
                    if (node & 1) == 0 and tree[node + 1] > 0:
                        node += 1
                        found = True
                        break
                    node >>= 1
                if found:
                    while node < size:
                        node *= 2
                        if tree[node] == 0:
                            node += 1
            if found:
                room = node - size
                b = head[room]
                head[room] = nxt[b]
                j = size + room
                while j >= 1:
                    tree[j] -= 1
                    j >>= 1
            else:
                b = n_bins
                n_bins += 1
                room = capacity
            bin_of[i] = b
            offset[i] = capacity - room
            room -= s
            bin_tokens[b] = capacity - room
            if room > 0:
                nxt[b] = head[room]
                head[room] = b
                j = size + room
                while j >= 1:
                    tree[j] += 1
                    j >>= 1
        return n_bins

    _KERNELS["order"] = order_kernel
    _KERNELS["bfd"] = bfd_kernel
    return _KERNELS
