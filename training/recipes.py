"""Training recipes: a base model, a position method, a mixture and hyper-parameters.

A recipe is the unit users compare on the leaderboard: the checkpoint asset is partitioned by
recipe x stage, and each stage of a recipe starts from that recipe's previous stage. Recipes
are plain data (no Dagster, no torch) so the training job, the eval runner and the Dagster
wiring read the same definitions. ``GIRAFFE_RECIPES`` may point at a JSON file with a list of
recipe dicts to replace the defaults (real runs: a hub model id as ``base_model``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from assets.contract.layout import BASE_MODEL_REF

# Stage name -> sequence capacity in tokens. Order is the progressive order.
DEFAULT_STAGES: dict[str, int] = {"8k": 8192, "32k": 32768, "64k": 65536, "128k": 131072}


def stage_capacities() -> dict[str, int]:
    """Stages from ``GIRAFFE_STAGES`` ("8k,32k" or "8k=8192,32k=32768"), else the defaults."""
    raw = os.environ.get("GIRAFFE_STAGES", "").strip()
    if not raw:
        return dict(DEFAULT_STAGES)
    out: dict[str, int] = {}
    for item in raw.split(","):
        name, _, cap = item.strip().partition("=")
        if cap:
            out[name] = int(cap)
        elif name in DEFAULT_STAGES:
            out[name] = DEFAULT_STAGES[name]
        elif name.lower().endswith("k") and name[:-1].isdigit():
            out[name] = int(name[:-1]) * 1024
        else:
            raise ValueError(f"GIRAFFE_STAGES: cannot read a capacity from {name!r} (use name=tokens)")
    if list(out.values()) != sorted(out.values()):
        raise ValueError(f"GIRAFFE_STAGES must be in increasing capacity order, got {out}")
    return out


def previous_stage(stage: str, stages: list[str] | tuple[str, ...]) -> str | None:
    """The stage a recipe's ``stage`` starts from (None for its first stage)."""
    if stage not in stages:
        raise ValueError(f"stage {stage!r} is not one of this recipe's stages {list(stages)}")
    i = list(stages).index(stage)
    return None if i == 0 else list(stages)[i - 1]


@dataclass(frozen=True)
class Recipe:
    """One progressive extension run. ``method`` is a position-method dict as
    ``training.positions.apply.as_position_method`` reads it; ``base_model`` is either
    ``"model/base"`` (the pipeline's base model asset) or a hub id / local path."""

    name: str
    method: dict[str, Any]
    base_model: str = BASE_MODEL_REF
    stages: tuple[str, ...] = ("8k", "32k")
    steps_per_stage: int = 4
    learning_rate: float = 1e-3
    warmup_steps: int = 1
    gradient_accumulation: int = 1
    lora: bool = False
    lora_rank: int = 8
    attention_mode: str = "concat"
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stages"] = list(self.stages)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        data = dict(data)
        if "stages" in data:
            data["stages"] = tuple(data["stages"])
        return cls(**data)


# Embedded defaults, two methods to compare. The embedded base model's original context L_V is
# 256 tokens (model/base records it; a method without original_length extends from the record),
# and its evaluation reaches about 1K tokens (Visual Haystack, 150 images), so M-RoPE++ extends
# 4x, to 1024, the same ratio as the paper's 32K -> 128K.
DEFAULT_RECIPES: tuple[Recipe, ...] = (
    Recipe(
        name="mrope_pp",
        method={"rope": {"method": "mrope++", "target_length": 1024}},
    ),
    Recipe(
        name="v2pe",
        method={"rope": {"method": "none"}, "v2pe": {"inference_delta": 0.25}},
    ),
)


def load_recipes() -> dict[str, Recipe]:
    """Recipes by name: ``GIRAFFE_RECIPES`` (a JSON list of dicts) or the defaults."""
    path = os.environ.get("GIRAFFE_RECIPES")
    if path:
        items = [Recipe.from_dict(d) for d in json.loads(Path(path).read_text())]
    else:
        items = list(DEFAULT_RECIPES)
    names = [r.name for r in items]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate recipe names: {names}")
    return {r.name: r for r in items}


def with_stages(recipe: Recipe, stages: tuple[str, ...]) -> Recipe:
    return replace(recipe, stages=stages)
