"""Jobs a user launches from the UI or the CLI."""

from __future__ import annotations

import dagster as dg

# The main job: everything that exists, raw sources to the last stage built so far.
everything = dg.define_asset_job(
    "giraffe_demo",
    selection=dg.AssetSelection.all(),
    description="Materialise the whole graph (on the embedded default unless configured otherwise).",
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

all_jobs = [everything, ingest, refresh]
