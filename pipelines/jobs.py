"""Jobs a user launches from the UI or the CLI, and the order ``giraffe demo`` runs them in.

A Dagster job cannot mix partitions definitions, so the graph runs as four jobs: the
unpartitioned data (raw sources to token counts, benchmark data, the base model's scores),
the stage-partitioned shards and mixture, the recipe|stage checkpoints with their
evaluations, and the leaderboard over all of them.
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
)

STAGE_GROUPS = [PACKING_GROUP]
CHECKPOINT_GROUPS = [TRAINING_GROUP, EVAL_GROUP]
ON_DEMAND_GROUPS = [LMMS_EVAL_GROUP]

CHECKPOINT_EVALUATIONS = dg.AssetSelection.groups(EVAL_GROUP)
LEADERBOARD = dg.AssetSelection.assets(LEADERBOARD_KEY)

everything = dg.define_asset_job(
    "giraffe_demo",
    selection=dg.AssetSelection.all()
    - dg.AssetSelection.groups(*STAGE_GROUPS, *CHECKPOINT_GROUPS, *ON_DEMAND_GROUPS)
    - LEADERBOARD,
    description="The unpartitioned graph: raw sources, ChatML, video frames, token counts, the base "
    "model, benchmark data and the base model's scores. `giraffe demo` then runs stage_data per "
    "stage, train_and_eval per recipe stage, and the leaderboard.",
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
    selection=dg.AssetSelection.groups(RAW_GROUP, CHATML_GROUP),
    description="Fetch every source and normalise it to ChatML.",
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

all_jobs = [everything, ingest, refresh, stage_data, train_and_eval, train, evaluate_checkpoint, report]

# What `giraffe demo` runs, in order; a partitioned job runs once per key of demo_partition_keys.
DEMO_SEQUENCE = ["giraffe_demo", "stage_data", "train_and_eval", "report"]


def demo_partition_keys(job: dg.JobDefinition) -> list[str | None]:
    """Partition keys the demo runs a job for, in dependency order: every stage for the shards;
    for checkpoints the recipe|stage pairs the recipes train, each recipe's stages in progressive
    order (stage k needs k-1), which is the order of the partitions definition."""
    if job.partitions_def is None:
        return [None]
    return list(job.partitions_def.get_partition_keys())
