"""Jobs a user launches from the UI or the CLI."""

from __future__ import annotations

import dagster as dg

# The main job: everything that exists, raw sources to the last stage built so far. Training is
# partitioned by recipe x stage and runs stage after stage (``train_checkpoint`` / ``giraffe train``).
everything = dg.define_asset_job(
    "giraffe_demo",
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups("training"),
    description="Materialise the whole graph (on the embedded default unless configured otherwise).",
)
ingest = dg.define_asset_job(
    "ingest_sources",
    selection=dg.AssetSelection.groups("raw_sources", "chatml"),
    description="Fetch every source and normalise it to ChatML.",
)

train = dg.define_asset_job(
    "train_checkpoint",
    selection=dg.AssetSelection.groups("training"),
    description="Train one stage of one recipe (partition recipe|stage); stage k needs stage k-1's checkpoint.",
)

all_jobs = [everything, ingest, train]
