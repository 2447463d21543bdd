"""Partitions shared by the sample-level, stage, training and evaluation assets.

``shard`` partitions the sample-level stages (chatml/<source>, video_frames, token_counts): a
sample's shard is sha1(sample_id) mod ``GIRAFFE_SHARDS`` (``assets/contract/shards.py``), so
one run (one worker, one host) computes one shard and a backfill spreads the shards over runs.
``stage`` partitions the packed sequences, the mixture and (with ``recipe``) the checkpoints
and evaluations, so a score can be followed back to the exact stage and from it to every shard.
See docs/shards.md.
"""

from __future__ import annotations

import dagster as dg

from assets.contract.shards import Shard, shard_count, shard_keys
from training.recipes import load_recipes, stage_capacities

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

stage_partitions = dg.StaticPartitionsDefinition(STAGES)
recipe_partitions = dg.StaticPartitionsDefinition(list(RECIPES))
# Dimension names sort alphabetically in Dagster's key ("recipe|stage" -> "mrope_pp|8k").
checkpoint_partitions = dg.MultiPartitionsDefinition({"recipe": recipe_partitions, "stage": stage_partitions})

