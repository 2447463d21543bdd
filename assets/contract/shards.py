"""Which shard a sample belongs to.

A sample's shard is a hash of its ``sample_id`` modulo the shard count. The id is itself a hash
of the source name and the record's content (``make_sample_id``), so a sample keeps its shard
across runs, hosts and row reorderings upstream; a nightly release that changes a few records
changes only the shards those records hash to. The count comes from ``GIRAFFE_SHARDS``
(default 4: enough to spread the embedded demo over workers, few enough to keep it quick).
Changing the count re-shards every sample: every sharded stage is materialised again.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

ENV_VAR = "GIRAFFE_SHARDS"
DEFAULT_SHARDS = 4


def shard_count(env: Mapping[str, str] | None = None) -> int:
    """The configured shard count (``GIRAFFE_SHARDS``), a clear error for a bad value."""
    raw = (os.environ if env is None else env).get(ENV_VAR, "").strip()
    if not raw:
        return DEFAULT_SHARDS
    try:
        count = int(raw)
    except ValueError:
        count = 0
    if not 1 <= count <= 65536:
        raise ValueError(f"{ENV_VAR}={raw!r}: expected a whole number of shards from 1 to 65536")
    return count


def shard_of(sample_id: str, shards: int) -> int:
    """The shard (0 .. shards-1) of ``sample_id``: sha1 of the id, first 8 bytes, modulo."""
    return int.from_bytes(hashlib.sha1(sample_id.encode()).digest()[:8], "big") % shards


def shard_key(index: int, shards: int) -> str:
    """The partition key of shard ``index``: zero-padded so keys sort in shard order."""
    return f"{index:0{max(2, len(str(shards - 1)))}d}"


def shard_keys(shards: int) -> list[str]:
    return [shard_key(i, shards) for i in range(shards)]


@dataclass(frozen=True)
class Shard:
    """One shard of ``count``: what a sharded stage's step computes."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index} outside 0..{self.count - 1}")

    @classmethod
    def from_key(cls, key: str, count: int) -> "Shard":
        if key not in shard_keys(count):
            raise ValueError(f"{key!r} is not a shard key of {count} shards ({shard_keys(count)[0]} ..)")
        return cls(int(key), count)

    @property
    def key(self) -> str:
        return shard_key(self.index, self.count)

    def contains(self, sample_id: str) -> bool:
        return shard_of(sample_id, self.count) == self.index
