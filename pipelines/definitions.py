"""The code location ``dagster dev`` loads (see ``[tool.dagster]`` in pyproject.toml)."""

from __future__ import annotations

import os

import dagster as dg

from assets.defs.chatml import build_chatml_assets
from assets.defs.checkpoint import checkpoint
from assets.defs.evaluation import evaluation_assets
from assets.defs.model import base_model
from assets.defs.packing import packing_assets
from assets.defs.resources import default_resources
from assets.defs.sources import build_raw_assets
from assets.defs.tokens import build_token_counts
from assets.defs.video import build_video_frames
from assets.sources.declared import ENV_VAR, all_sources
from pipelines.automation import apply_automation, automation_sensor
from pipelines.jobs import all_jobs
from pipelines.schedules import nightly_refresh_schedule


def build_definitions(resources: dict | None = None, datasets: str | None = None) -> dg.Definitions:
    """Definitions with resources from the environment (read now, not at first import); any
    ``resources`` given replace those keys only. ``datasets`` (default ``$GIRAFFE_DATASETS``)
    names a file of declared datasets: each becomes raw/<name> and chatml/<name> beside the
    registry's sources and flows through video frames, token counts, packing and the mixture."""
    specs = all_sources(datasets if datasets is not None else os.environ.get(ENV_VAR))
    video_sources = [s.name for s in specs if s.category == "video"]
    data_assets = [
        *build_raw_assets(specs),
        *build_chatml_assets(specs),
        base_model,
        build_video_frames(video_sources),
        build_token_counts([s.name for s in specs]),
    ]
    return dg.Definitions(
        assets=apply_automation([*data_assets, *packing_assets, checkpoint, *evaluation_assets]),
        jobs=all_jobs,
        schedules=[nightly_refresh_schedule()],
        sensors=[automation_sensor()],
        resources={**default_resources(), **(resources or {})},
    )


defs = build_definitions()
