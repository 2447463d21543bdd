"""Jobs a user launches from the UI or the CLI."""

from __future__ import annotations

import dagster as dg

# Per-checkpoint evaluations are partitioned by recipe|stage: they run per partition (their own
# job below, a backfill, or automatically when a checkpoint partition lands), not in the
# unpartitioned demo run; the optional lmms-eval asset (group lmms_eval) runs on demand.
CHECKPOINT_EVALUATIONS = dg.AssetSelection.groups("evaluation")

# The main job: everything that exists, raw sources to the last stage built so far.
everything = dg.define_asset_job(
    "giraffe_demo",
    selection=dg.AssetSelection.all() - CHECKPOINT_EVALUATIONS - dg.AssetSelection.groups("lmms_eval"),
    description="Materialise the whole graph (on the embedded default unless configured otherwise).",
)
ingest = dg.define_asset_job(
    "ingest_sources",
    selection=dg.AssetSelection.groups("raw_sources", "chatml"),
    description="Fetch every source and normalise it to ChatML.",
)
evaluate_checkpoint = dg.define_asset_job(
    "evaluate_checkpoint",
    selection=CHECKPOINT_EVALUATIONS,
    description="Every benchmark on one checkpoint partition (recipe|stage); partitions inferred from the assets.",
)

all_jobs = [everything, ingest, evaluate_checkpoint]
