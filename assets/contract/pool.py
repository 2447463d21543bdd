"""Spreading a stage's record batches over a process pool sized to the host, in order.

The data stages are CPU-bound Python (adapters, cleaning, tokenisation): one process is one
core. ``ordered_map`` keeps at most ``ahead`` batches per worker in flight, so the step
process holds a bounded number of batches whatever the source size, and yields the results
in input order, so outputs are written in the order a single process would write them.

Workers are spawned, not forked: a Dagster step process runs threads, and a fork can
inherit a lock one of them holds. What a worker needs (a source spec, a processor folder)
travels through ``initializer``/``initargs``; closures (declared sources' adapters) travel
as cloudpickle bytes (``portable``).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """The cores this process may run on (a container's or a Slurm job's share, not the host's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_workers(workers: int | None) -> int:
    """``workers`` from config: None or 0 means every core this process may use."""
    return default_workers() if not workers or workers <= 0 else int(workers)


# Below this much data (uncompressed Parquet bytes) a stage left to choose runs in its own
# process: starting spawned workers costs seconds, more than the work (the embedded demo).
POOL_MIN_BYTES = 8 << 20
BATCHES_PER_WORKER = 4
# Data per batch (uncompressed Parquet bytes, on average) when the stage chooses: a worker
# holds a few batches as Python objects and their tokenizer encodings, 10-20x this.
BATCH_BYTES = 8 << 20


def plan_workers(workers: int | None, rows: int, batch_size: int, data_bytes: int) -> tuple[int, int]:
    """(processes, rows per batch) for ``rows`` rows of ``data_bytes``. Workers set in config
    are used as given (at most one per batch). Left to the default (None or 0), every core
    once the data is worth a pool, and batches small enough that each worker gets several
    (a source of 300 long documents is not one batch on one core) and that a batch holds
    about ``BATCH_BYTES`` at most (512 LongAlign documents are 30 MB of text)."""
    batch_size = max(1, int(batch_size))
    if workers and workers > 0:
        return max(1, min(int(workers), -(-rows // batch_size))), batch_size
    cores = default_workers()
    if cores <= 1 or rows < 2 or data_bytes < POOL_MIN_BYTES:
        return 1, batch_size
    by_bytes = max(1, BATCH_BYTES * rows // max(1, data_bytes))
    batch = max(1, min(batch_size, -(-rows // (cores * BATCHES_PER_WORKER)), by_bytes))
    return max(1, min(cores, -(-rows // batch))), batch


def parquet_bytes(*paths) -> int:
    """Uncompressed data bytes of Parquet files, from their footers."""
    import pyarrow.parquet as pq

    total = 0
    for path in paths:
        meta = pq.read_metadata(path)
        total += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    return total


def portable(obj: Any) -> bytes:
    """``obj`` as bytes a spawned worker can load: pickle, or cloudpickle for closures."""
    try:
        return pickle.dumps(obj)
    except (pickle.PicklingError, AttributeError, TypeError):
        import cloudpickle

        return cloudpickle.dumps(obj)


def unportable(data: bytes) -> Any:
    return pickle.loads(data)


def _watch_parent(parent_pid: int) -> None:
    """End this worker when the step process is gone (SIGKILL leaves no chance to shut the pool)."""
    import signal
    import sys
    import threading
    import time

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _init(parent_pid: int, initializer: Callable[..., None] | None, initargs: tuple) -> None:
    _watch_parent(parent_pid)
    if initializer is not None:
        initializer(*initargs)


def ordered_map(
    fn: Callable[[T], R],
    tasks: Iterable[T],
    workers: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
    ahead: int = 2,
) -> Iterator[R]:
    """``fn(task)`` for every task, in order, over ``workers`` processes (in this process when
    ``workers`` is 1: no pool to start for a small source or a test). ``fn`` and
    ``initializer`` must be importable module-level functions."""
    if workers <= 1:
        if initializer is not None:
            initializer(*initargs)
        for task in tasks:
            yield fn(task)
        return
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init,
                             initargs=(os.getpid(), initializer, initargs)) as pool:
        pending: deque[Future] = deque()
        for task in tasks:
            pending.append(pool.submit(fn, task))
            if len(pending) >= workers * ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
