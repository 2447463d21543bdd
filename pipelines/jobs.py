"""Jobs a user launches from the UI or the CLI, and the order ``giraffe demo`` runs them in.

A Dagster job cannot mix partitions definitions, so the graph runs as five jobs: the
unpartitioned data (raw sources, the base model, benchmark data, the base model's scores), the
shard-partitioned sample stages (ChatML, video frames, token counts: one run per shard, see
docs/shards.md), the stage-partitioned packed sequences and mixture, the recipe|stage
checkpoints with their evaluations, and the leaderboard over all of them.
"""

from __future__ import annotations

import dagster as dg

from assets.defs.keys import (
    CHATML_GROUP,
    EVAL_GROUP,
    LEADERBOARD_KEY,
    LMMS_EVAL_GROUP,
    PACKING_GROUP,
    RAW_GROUP,
    TRAINING_GROUP,
    VIDEO_GROUP,
)

SHARD_GROUPS = [CHATML_GROUP, VIDEO_GROUP]  # chatml/<source>, video_frames, token_counts
STAGE_GROUPS = [PACKING_GROUP]
CHECKPOINT_GROUPS = [TRAINING_GROUP, EVAL_GROUP]
ON_DEMAND_GROUPS = [LMMS_EVAL_GROUP]

CHECKPOINT_EVALUATIONS = dg.AssetSelection.groups(EVAL_GROUP)
LEADERBOARD = dg.AssetSelection.assets(LEADERBOARD_KEY)

everything = dg.define_asset_job(
    "giraffe_demo",
    selection=dg.AssetSelection.all()
    - dg.AssetSelection.groups(*SHARD_GROUPS, *STAGE_GROUPS, *CHECKPOINT_GROUPS, *ON_DEMAND_GROUPS)
    - LEADERBOARD,
    description="The unpartitioned graph: raw sources, the base model, benchmark data and the base "
    "model's scores. `giraffe demo` then runs shard_data per shard, stage_data per stage, "
    "train_and_eval per recipe stage, and the leaderboard.",
)
shard_data = dg.define_asset_job(
    "shard_data",
    selection=dg.AssetSelection.groups(*SHARD_GROUPS),
    description="One shard of the sample-level stages: every source's ChatML, the video frames and the token "
    "counts of the samples that hash to it. A backfill of all shards spreads them over runs (and workers).",
    # One process per shard run: the parallelism is across shards (runs, workers, hosts) and inside a
    # step (its process pool), not a process per step that would load the code location again each time.
    executor_def=dg.in_process_executor,
)
stage_data = dg.define_asset_job(
    "stage_data",
    selection=dg.AssetSelection.groups(*STAGE_GROUPS),
    description="Pack every counted sample and mix the ETVLM training set of one stage partition.",
)
train_and_eval = dg.define_asset_job(
    "train_and_eval",
    selection=dg.AssetSelection.groups(*CHECKPOINT_GROUPS),
    description="Train one recipe|stage checkpoint (Pipes) and run every benchmark on it.",
)
evaluate_checkpoint = dg.define_asset_job(
    "evaluate_checkpoint",
    selection=CHECKPOINT_EVALUATIONS,
    description="Every benchmark on one checkpoint partition (recipe|stage).",
)
report = dg.define_asset_job(
    "report",
    selection=LEADERBOARD,
    description="The leaderboard over every evaluated checkpoint and the base model.",
)
ingest = dg.define_asset_job(
    "ingest_sources",
    selection=dg.AssetSelection.groups(CHATML_GROUP),
    description="Normalise every fetched source to ChatML, one shard per run (`giraffe demo --job "
    "ingest_sources` fetches the sources first).",
)
# The nightly refresh: fetch every raw source again and nothing else. What is downstream of a
# source recomputes through the automation policy only where the content hash changed.
refresh = dg.define_asset_job(
    "refresh_sources",
    selection=dg.AssetSelection.groups(RAW_GROUP),
    description="Re-fetch every raw source; downstream assets follow only where content changed.",
)

train = dg.define_asset_job(
    "train_checkpoint",
    selection=dg.AssetSelection.groups(TRAINING_GROUP),
    description="Train one stage of one recipe (partition recipe|stage); stage k needs stage k-1's checkpoint.",
)

all_jobs = [everything, ingest, refresh, shard_data, stage_data, train_and_eval, train, evaluate_checkpoint, report]

# What `giraffe demo` runs, in order; a partitioned job runs once per key of demo_partition_keys.
DEMO_SEQUENCE = ["giraffe_demo", "shard_data", "stage_data", "train_and_eval", "report"]
# `giraffe demo --job NAME` runs these first where NAME needs them (ChatML needs fetched sources).
DEMO_PREREQUISITES = {"ingest_sources": ["refresh_sources"]}


def demo_jobs(name: str) -> list[str]:
    """The jobs `giraffe demo --job name` runs, in order."""
    if name == "giraffe_demo":
        return list(DEMO_SEQUENCE)
    return [*DEMO_PREREQUISITES.get(name, []), name]


def demo_partition_keys(job: dg.JobDefinition) -> list[str | None]:
    """Partition keys the demo runs a job for, in dependency order: every shard, every stage;
    for checkpoints the recipe|stage pairs the recipes train, each recipe's stages in progressive
    order (stage k needs k-1), which is the order of the partitions definition."""
    if job.partitions_def is None:
        return [None]
    return list(job.partitions_def.get_partition_keys())
