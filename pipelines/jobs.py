"""Jobs a user launches from the UI or the CLI."""

from __future__ import annotations

import dagster as dg

# Groups of stage-partitioned assets: a job cannot mix partitions definitions, so they run in
# their own job, one run per stage (``giraffe demo`` runs DEMO_SEQUENCE in order).
STAGE_GROUPS = ["packing"]

# The main job: every unpartitioned asset, raw sources to token counts.
everything = dg.define_asset_job(
    "giraffe_demo",
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups(*STAGE_GROUPS),
    description="Materialise the unpartitioned graph (on the embedded default unless configured "
    "otherwise); `giraffe demo` then runs stage_data for every stage.",
)
stage_data = dg.define_asset_job(
    "stage_data",
    selection=dg.AssetSelection.groups("packing"),
    description="Pack every counted sample and mix the ETVLM training set of one stage partition.",
)
ingest = dg.define_asset_job(
    "ingest_sources",
    selection=dg.AssetSelection.groups("raw_sources", "chatml"),
    description="Fetch every source and normalise it to ChatML.",
)

# The nightly refresh: fetch every raw source again and nothing else. What is downstream of a
# source recomputes through the automation policy only where the content hash changed.
refresh = dg.define_asset_job(
    "refresh_sources",
    selection=dg.AssetSelection.groups("raw_sources"),
    description="Re-fetch every raw source; downstream assets follow only where content changed.",
)

all_jobs = [everything, ingest, refresh, stage_data]

# What `giraffe demo` runs, in order; a partitioned job runs once per partition key.
DEMO_SEQUENCE = ["giraffe_demo", "stage_data"]
