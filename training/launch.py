"""The command line that starts a training run: plain Python, torchrun or the DeepSpeed launcher.

Pure functions (no process is started here), so the Dagster asset, the CLI and the tests
build exactly the same commands:

* ``python``    -> ``python -m training --config run.json`` (CPU or one GPU, one process)
* ``torchrun``  -> ``python -m torch.distributed.run --standalone --nproc_per_node N -m training ...``
  (the ``torchrun`` entry point, through the same interpreter so the venv is kept)
* ``deepspeed`` -> ``python -m deepspeed.launcher.runner --num_gpus N --master_port P --module
  training --config run.json --deepspeed <ds.json>`` (the ``deepspeed`` entry point)

Every rank runs ``training/__main__.py``; only rank 0 talks to Dagster Pipes.
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass, field

LAUNCHERS = ("python", "torchrun", "deepspeed")


@dataclass(frozen=True)
class LaunchConfig:
    launcher: str = "python"
    nproc: int = 1
    """Processes (GPUs) on this node."""
    python: str = sys.executable
    master_port: int | None = None
    """DeepSpeed rendezvous port (a free one is picked when None); torchrun uses --standalone."""
    hostfile: str | None = None
    """DeepSpeed multi-node hostfile (``deepspeed --hostfile``); None = this node only."""
    extra_args: tuple[str, ...] = field(default_factory=tuple)
    """Extra arguments for ``python -m training`` (e.g. ``("--steps", "8")``)."""

    def __post_init__(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise ValueError(f"launcher {self.launcher!r} is not one of {list(LAUNCHERS)}")
        if self.nproc < 1:
            raise ValueError(f"nproc must be >= 1, got {self.nproc}")
        if self.launcher == "python" and self.nproc != 1:
            raise ValueError("the python launcher runs one process; use torchrun or deepspeed for nproc > 1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_command(launch: LaunchConfig, config_path: str, deepspeed_config: str | None = None) -> list[str]:
    """argv for ``subprocess`` / ``PipesSubprocessClient``."""
    job = ["--config", str(config_path), *launch.extra_args]
    if launch.launcher == "python":
        return [launch.python, "-m", "training", *job]
    if launch.launcher == "torchrun":
        return [
            launch.python, "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node", str(launch.nproc), "-m", "training", *job,
        ]
    if deepspeed_config is None:
        raise ValueError("the deepspeed launcher needs a DeepSpeed config (zero2 / zero3_offload / a path)")
    cmd = [launch.python, "-m", "deepspeed.launcher.runner"]
    if launch.hostfile:
        cmd += ["--hostfile", launch.hostfile]
    else:
        cmd += ["--num_gpus", str(launch.nproc)]
    cmd += ["--master_port", str(launch.master_port or free_port()), "--module", "training", *job]
    return cmd + ["--deepspeed", str(deepspeed_config)]


def describe(cmd: list[str]) -> str:
    import shlex

    return " ".join(shlex.quote(c) for c in cmd)
