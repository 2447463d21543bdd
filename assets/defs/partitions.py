"""Partitions shared by the sample-level, stage, training and evaluation assets.

``shard`` partitions the sample-level stages (chatml/<source>, video_frames, token_counts): a
sample's shard is sha1(sample_id) mod ``GIRAFFE_SHARDS`` (``assets/contract/shards.py``), so
one run (one worker, one host) computes one shard and a backfill spreads the shards over runs.
Packing reads every shard (``ALL_SHARDS``), so a score can be followed back from its stage to
every shard and raw source. See docs/shards.md.

``stage`` partitions the packed sequences and the mixture. Checkpoints and their evaluations are
partitioned by the ``recipe|stage`` pairs the recipes define, and only those: a recipe that
trains 8k and 32k has two partitions, not one per configured stage. (A recipe x stage
``MultiPartitionsDefinition`` would hold every pair, so the pairs no recipe trains would stay
missing forever and fail when launched.) The keys are computed from the recipes when the code
location loads (``training.recipes.load_recipes``, ``GIRAFFE_RECIPES``), so they follow the
recipes without any state in the instance: changing the recipes and reloading the code location
is all it takes. They keep the spelling of the recipe x stage key (``mrope_pp|8k``), so
materialisations, paths and commands read the same as before.

A checkpoint partition depends on the mixture of its stage through a ``StaticPartitionMapping``
(``8k -> mrope_pp|8k, v2pe|8k``), so a score can still be followed back to the exact stage's
shards; stages that no recipe trains map to nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg

from assets.contract.shards import Shard, shard_count, shard_keys
from training.recipes import Recipe, load_recipes, stage_capacities

SHARDS: int = shard_count()
SHARD_KEYS: list[str] = shard_keys(SHARDS)
shard_partitions = dg.StaticPartitionsDefinition(SHARD_KEYS)
# packed and etvlm_mixture (one stage each) read every shard of the token counts.
ALL_SHARDS = dg.AllPartitionMapping()


def shard_of_run(context: dg.AssetExecutionContext) -> Shard:
    """The shard a sharded asset's step computes (its partition key)."""
    return Shard.from_key(context.partition_key, SHARDS)

STAGE_CAPACITIES: dict[str, int] = stage_capacities()
STAGES: list[str] = list(STAGE_CAPACITIES)
RECIPES = load_recipes()
KEY_SEPARATOR = "|"


def checkpoint_key(recipe: str, stage: str) -> str:
    return f"{recipe}{KEY_SEPARATOR}{stage}"


def split_checkpoint_key(key: str) -> tuple[str, str]:
    """``"mrope_pp|8k"`` -> ``("mrope_pp", "8k")``."""
    recipe, sep, stage = str(key).rpartition(KEY_SEPARATOR)
    if not sep or not recipe or not stage:
        raise ValueError(f"not a checkpoint partition key (recipe{KEY_SEPARATOR}stage): {key!r}")
    return recipe, stage


def checkpoint_keys(recipes: Mapping[str, Recipe], stages: list[str]) -> list[str]:
    """Every (recipe, stage) a recipe trains and the stage list has, each recipe's stages in
    progressive order (the order ``giraffe demo`` runs them in: stage k starts from k-1)."""
    for name in recipes:
        if KEY_SEPARATOR in name:
            raise ValueError(f"recipe name {name!r} must not contain {KEY_SEPARATOR!r}")
    return [checkpoint_key(name, s) for name, r in recipes.items() for s in r.stages if s in stages]


def stage_to_checkpoints(keys: list[str]) -> dict[str, list[str]]:
    """{stage: the checkpoint partitions trained on that stage's mixture}."""
    out: dict[str, list[str]] = {}
    for key in keys:
        out.setdefault(split_checkpoint_key(key)[1], []).append(key)
    return out


CHECKPOINT_KEYS: list[str] = checkpoint_keys(RECIPES, STAGES)
stage_partitions = dg.StaticPartitionsDefinition(STAGES)
checkpoint_partitions = dg.StaticPartitionsDefinition(CHECKPOINT_KEYS)
mixture_to_checkpoint = dg.StaticPartitionMapping(stage_to_checkpoints(CHECKPOINT_KEYS))
"""etvlm_mixture[stage] -> checkpoint[recipe|stage] for every recipe training that stage."""
