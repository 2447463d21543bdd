"""Resumable training state under ``<output>/state/step_<n>/``.

A state holds what a restarted process needs to continue exactly where the killed one was:

* ``trainable.safetensors`` - the trainable parameters (the frozen vision tower is reloaded
  from the initial weights, so it is not copied at every save; LoRA runs save only adapters);
* ``optimizer.pt``, ``scheduler.pt`` - their ``state_dict``s;
* ``rng.pt`` - Python, NumPy, torch (CPU and CUDA) generators and V2PE delta samplers;
* ``trainer_state.json`` - step, loss and learning-rate history, tokens, elapsed time and the config's
  resume fingerprint (a state from a different model/data/schedule is never resumed).

A state is written to ``step_<n>.tmp`` and renamed when complete, so a process killed while
saving leaves the previous state as the latest. The data position needs no saving: micro-batch
k is a pure function of the step (``training.data``).
"""

from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from training.positions.apply import V2PERopeIndex

STATE_FILE = "trainer_state.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")


@dataclass
class TrainerState:
    step: int = 0
    losses: list[tuple[int, float]] = field(default_factory=list)
    lrs: list[tuple[int, float]] = field(default_factory=list)
    """(step, learning rate the step used), for the schedule plot."""
    tokens: int = 0
    """Tokens trained on over the whole run, resumed parts included."""
    seconds: float = 0.0
    fingerprint: str = ""
    initialized_from: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> TrainerState:
        data = json.loads(text)
        data["losses"] = [tuple(x) for x in data.get("losses", [])]
        data["lrs"] = [tuple(x) for x in data.get("lrs", [])]  # absent in states written before it was kept
        return cls(**data)


def state_dirs(state_root: Path) -> list[tuple[int, Path]]:
    """Complete states (with ``trainer_state.json``), oldest first."""
    if not state_root.is_dir():
        return []
    out = []
    for p in state_root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and p.is_dir() and (p / STATE_FILE).is_file():
            out.append((int(m.group(1)), p))
    return sorted(out)


def latest_state(state_root: Path) -> Path | None:
    dirs = state_dirs(state_root)
    return dirs[-1][1] if dirs else None


def read_trainer_state(path: Path) -> TrainerState:
    return TrainerState.from_json((path / STATE_FILE).read_text())


def rng_state(model=None) -> dict[str, Any]:
    import numpy as np

    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if model is not None:
        state["v2pe"] = {name: s._rng.getstate() for name, s in _v2pe_samplers(model)}
    return state


def set_rng_state(state: dict[str, Any], model=None) -> None:
    import numpy as np

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if model is not None:
        saved = state.get("v2pe", {})
        for name, sampler in _v2pe_samplers(model):
            if name in saved:
                sampler._rng.setstate(saved[name])


def _v2pe_samplers(model):
    for name, module in model.named_modules():
        index = module.__dict__.get("get_rope_index")
        if isinstance(index, V2PERopeIndex):
            yield name, index.sampler


def save_state(
    state_root: Path,
    trainer: TrainerState,
    trainable: dict[str, torch.Tensor],
    optimizer,
    scheduler,
    model=None,
    keep: int = 2,
) -> Path:
    """Write ``state_root/step_<n>`` atomically and prune to the newest ``keep`` states."""
    from safetensors.torch import save_file

    final = state_root / f"step_{trainer.step}"
    tmp = state_root / f"step_{trainer.step}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in trainable.items()}, str(tmp / "trainable.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save(rng_state(model), tmp / "rng.pt")
    (tmp / STATE_FILE).write_text(trainer.to_json())  # last: marks the state complete
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for _, old in state_dirs(state_root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_state(path: Path, optimizer, scheduler, model=None) -> tuple[TrainerState, dict[str, torch.Tensor]]:
    """Restore optimizer, scheduler and RNG; return the trainer state and the trainable weights."""
    from safetensors.torch import load_file

    trainable = load_file(str(path / "trainable.safetensors"))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    set_rng_state(torch.load(path / "rng.pt", weights_only=False), model)
    return read_trainer_state(path), trainable
