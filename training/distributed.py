"""Process-group setup from the launcher's environment (torchrun / deepspeed set the variables).

``WORLD_SIZE`` 1 (or unset) is a plain single process: no process group at all. Otherwise NCCL
on GPUs and gloo on CPU (so the torchrun path is exercised on CPU by the tests).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def setup(use_deepspeed: bool = False) -> DistInfo:
    rank = env_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if use_deepspeed and device.type == "cpu":
        cpu_deepspeed_without_shm_kernel()
    if world > 1 and not dist.is_initialized():
        if use_deepspeed:
            import deepspeed

            deepspeed.init_distributed(dist_backend="nccl" if device.type == "cuda" else "gloo")
        else:
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world, device=device)


def cpu_deepspeed_without_shm_kernel() -> None:
    """DeepSpeed on CPU JIT-compiles a shared-memory allreduce kernel (minutes with a C++
    toolchain, a failure without one); gloo does the same job for the CPU runs here. DeepSpeed
    keeps its op-compatibility table in one module-level dict, so marking the op incompatible
    makes its CPU backend fall back to plain torch.distributed (gloo)."""
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def barrier(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(value: float, info: DistInfo) -> float:
    if not (info.distributed and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


def all_reduce_sum(value: int, info: DistInfo) -> int:
    if not (info.distributed and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return int(t.item())


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
