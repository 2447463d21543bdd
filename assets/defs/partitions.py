"""Partitions shared by the stage, training and evaluation assets.

``stage`` partitions the packed shards, the mixture and (with ``recipe``) the checkpoints and
evaluations, so a score can be followed back to the exact stage's shards.
"""

from __future__ import annotations

import dagster as dg

from training.recipes import load_recipes, stage_capacities

STAGE_CAPACITIES: dict[str, int] = stage_capacities()
STAGES: list[str] = list(STAGE_CAPACITIES)
RECIPES = load_recipes()

stage_partitions = dg.StaticPartitionsDefinition(STAGES)
recipe_partitions = dg.StaticPartitionsDefinition(list(RECIPES))
# Dimension names sort alphabetically in Dagster's key ("recipe|stage" -> "mrope_pp|8k").
checkpoint_partitions = dg.MultiPartitionsDefinition({"recipe": recipe_partitions, "stage": stage_partitions})

