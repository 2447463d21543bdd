"""Concurrency pools of the instance: one GPU job at a time.

Dagster keeps per-pool limits in the instance's storage, not in ``dagster.yaml`` (the yaml only
holds ``concurrency.pools.default_limit`` and ``granularity``), so the ``giraffe`` CLI sets them on
every instance it prepares, the same as ``dagster instance concurrency set gpu 1``. Assets that
need the GPU (training; evaluation on a GPU host) declare ``pool=GPU_POOL``.

With ``granularity: run`` (dagster.yaml) the queued run coordinator starts at most ``limit`` runs
that hold a step of the pool; in-process runs (``giraffe demo``) are not throttled, so a killed
demo can never leave a claimed slot that blocks the next one.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

GPU_POOL = "gpu"
POOL_LIMITS: Mapping[str, int] = {GPU_POOL: 1}


def apply_pool_limits(instance: dg.DagsterInstance, limits: Mapping[str, int] = POOL_LIMITS) -> dict[str, int]:
    """Set each pool's limit on ``instance`` (idempotent); returns the limits now in force."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        raise RuntimeError(f"instance storage {type(storage).__name__} does not support concurrency pools")
    for pool, limit in limits.items():
        info = storage.get_concurrency_info(pool)
        if info.limit != limit or info.using_default_limit:
            storage.set_concurrency_slots(pool, limit)
    return {pool: storage.get_concurrency_info(pool).limit for pool in limits}
