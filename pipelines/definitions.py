"""The code location ``dagster dev`` loads (see ``[tool.dagster]`` in pyproject.toml)."""

from __future__ import annotations

import dagster as dg

from assets.chatml import chatml_assets
from assets.model import base_model
from assets.sources import raw_assets
from pipelines.jobs import all_jobs
from pipelines.resources import default_resources

defs = dg.Definitions(
    assets=[*raw_assets, *chatml_assets, base_model],
    jobs=all_jobs,
    resources=default_resources(),
)
