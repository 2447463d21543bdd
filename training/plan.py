"""From (recipe, stage) to the ``TrainConfig`` of that stage's run: where it starts, what it reads.

Plain Python (no Dagster), used by the ``checkpoint`` asset before it launches anything.
Stage k of a recipe starts from stage k-1's final checkpoint of the same recipe; the first
stage starts from the recipe's base model (``model/base`` = the pipeline's base model asset).
Every problem a launch would hit late - a stage not in the recipe, a missing predecessor, a
missing mixture shard, an unknown method - is raised here as :class:`PlanError` with the fix.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assets.contract.layout import BASE_MODEL_REF, DataLayout
from training.config import ConfigError, TrainConfig, validate
from training.recipes import Recipe, previous_stage
from training.tiny_model import original_length


class PlanError(ValueError):
    """The stage cannot be trained now; the message says why and what to materialise first."""


@dataclass(frozen=True)
class StagePlan:
    recipe: Recipe
    stage: str
    previous: str | None
    """The stage this one starts from (None: the base model)."""
    config: TrainConfig

    @property
    def run_config_path(self) -> Path:
        return Path(self.config.output_dir) / "run.json"


def base_model_path(recipe: Recipe, data_root: Path) -> str:
    if recipe.base_model == BASE_MODEL_REF:
        return str(DataLayout(data_root).base_model)
    return recipe.base_model


def resolve_method(method: dict[str, Any] | None, model_path: str) -> dict[str, Any] | None:
    """The recipe's method with a missing ``original_length`` filled in from the model it starts
    from (L_V: the base model record's ``original_length``, else ``max_position_embeddings``),
    so a recipe can say "M-RoPE++ to 1024 tokens" and extend from whatever base it is given."""
    from training.positions.apply import with_original_length  # defers torch
    from training.positions.rope import needs_lengths

    if not method or not isinstance(method.get("rope"), dict) or method["rope"].get("original_length"):
        return method
    if not needs_lengths(str(method["rope"].get("method"))):
        return method
    config = Path(model_path) / "config.json"
    length = original_length(json.loads(config.read_text())) if config.is_file() else None
    if not length:
        raise PlanError(f"method {method['rope'].get('method')!r} has no original_length and {config} records none")
    return with_original_length(method, length)


def plan_stage(
    recipe: Recipe, stage: str, data_root: str | Path, overrides: dict[str, Any] | None = None
) -> StagePlan:
    """The validated run of ``recipe`` at ``stage``; raises :class:`PlanError` otherwise."""
    data_root = Path(data_root)
    layout = DataLayout(data_root)
    overrides = dict(overrides or {})
    if stage not in recipe.stages:
        raise PlanError(
            f"stage {stage!r} is not one of recipe {recipe.name!r}'s stages {list(recipe.stages)}: "
            "nothing to train for this partition"
        )
    prev = previous_stage(stage, recipe.stages)
    if prev is None:
        model_path = base_model_path(recipe, data_root)
        if recipe.base_model == BASE_MODEL_REF and not (Path(model_path) / "config.json").is_file():
            raise PlanError(f"the base model is missing at {model_path}: materialise model/base first")
    else:
        model_path = str(layout.checkpoint(recipe.name, prev))
        if not (Path(model_path) / "config.json").is_file():
            raise PlanError(
                f"stage {stage!r} of recipe {recipe.name!r} starts from stage {prev!r}, whose checkpoint is "
                f"missing at {model_path}: materialise checkpoint {recipe.name}|{prev} first"
            )
    shard = layout.mixture(stage)
    if overrides.get("batch_source", "packed") == "packed" and not shard.is_file():
        raise PlanError(f"the mixture shard for stage {stage!r} is missing at {shard}: materialise etvlm_mixture {stage} first")

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(recipe.extra) - fields)
    if unknown:
        raise PlanError(f"recipe {recipe.name!r} has extra settings that are not TrainConfig fields: {unknown}")
    values: dict[str, Any] = {
        "model_path": model_path,
        "output_dir": str(layout.checkpoint_run(recipe.name, stage)),
        "recipe": recipe.name,
        "stage": stage,
        "method": resolve_method(recipe.method, model_path),
        "shards": [str(shard)],
        "data_root": str(data_root),
        "steps": recipe.steps_per_stage,
        "learning_rate": recipe.learning_rate,
        "warmup_steps": recipe.warmup_steps,
        "gradient_accumulation": recipe.gradient_accumulation,
        "lora": recipe.lora,
        "lora_rank": recipe.lora_rank,
        "seed": recipe.seed,
        **recipe.extra,
        **{k: v for k, v in overrides.items() if v is not None},
    }
    try:
        cfg = validate(TrainConfig.from_dict(values))
    except ConfigError as err:
        raise PlanError(f"recipe {recipe.name!r} stage {stage!r}: {err}") from None
    return StagePlan(recipe=recipe, stage=stage, previous=prev, config=cfg)
