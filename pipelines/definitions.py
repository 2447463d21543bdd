"""The code location ``dagster dev`` loads (see ``[tool.dagster]`` in pyproject.toml)."""

from __future__ import annotations

import dagster as dg

from assets.defs.chatml import chatml_assets
from assets.defs.checkpoint import checkpoint
from assets.defs.evaluation import evaluation_assets
from assets.defs.model import base_model
from assets.defs.packing import packing_assets
from assets.defs.resources import default_resources
from assets.defs.sources import raw_assets
from assets.defs.tokens import token_counts
from assets.defs.video import video_frames
from pipelines.automation import apply_automation, automation_sensor
from pipelines.jobs import all_jobs
from pipelines.schedules import apply_raw_freshness, nightly_refresh_schedule


def build_definitions(resources: dict | None = None) -> dg.Definitions:
    """Definitions with resources from the environment (read now, not at first import); any
    ``resources`` given replace those keys only."""
    return dg.Definitions(
        assets=apply_raw_freshness(apply_automation(
            [*raw_assets, *chatml_assets, base_model, video_frames, token_counts, *packing_assets, checkpoint, *evaluation_assets]
        )),
        jobs=all_jobs,
        schedules=[nightly_refresh_schedule()],
        sensors=[automation_sensor()],
        resources={**default_resources(), **(resources or {})},
    )


defs = build_definitions()
