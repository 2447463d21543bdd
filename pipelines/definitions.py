"""The code location ``dagster dev`` loads (see ``[tool.dagster]`` in pyproject.toml).

Assets are collected from the ``assets.defs`` package, so a new stage module there is in the
graph without a line here; jobs, schedules, sensors and the automation policy are wired here.
"""

from __future__ import annotations

import dagster as dg

import assets.defs
from assets.defs.resources import default_resources
from pipelines.automation import apply_automation, automation_sensor
from pipelines.jobs import all_jobs
from pipelines.schedules import nightly_refresh_schedule


def graph_assets() -> list:
    """Every asset (with its checks) defined in the Dagster layer, found by module scan."""
    return list(dg.load_assets_from_package_module(assets.defs))


def build_definitions(resources: dict | None = None) -> dg.Definitions:
    """Definitions with resources from the environment (read now, not at first import); any
    ``resources`` given replace those keys only."""
    return dg.Definitions(
        assets=apply_automation(graph_assets()),
        jobs=all_jobs,
        schedules=[nightly_refresh_schedule()],
        sensors=[automation_sensor()],
        resources={**default_resources(), **(resources or {})},
    )


def current_definitions() -> dg.Definitions:
    """The definitions for the environment of now (no arguments: what a code pointer calls)."""
    return build_definitions()


defs = build_definitions()
