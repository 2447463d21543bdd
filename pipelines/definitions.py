"""The code location ``dagster dev`` loads (see ``[tool.dagster]`` in pyproject.toml)."""

from __future__ import annotations

import dagster as dg

from assets.chatml import chatml_assets
from assets.model import base_model
from assets.sources import raw_assets
from assets.token_counts import token_counts
from assets.training import checkpoint
from assets.video import video_frames
from pipelines.jobs import all_jobs
from pipelines.resources import default_resources


def build_definitions(resources: dict | None = None) -> dg.Definitions:
    """Definitions with resources from the environment (read now, not at first import)."""
    return dg.Definitions(
        assets=[*raw_assets, *chatml_assets, base_model, video_frames, token_counts, checkpoint],
        jobs=all_jobs,
        resources=resources or default_resources(),
    )


defs = build_definitions()
