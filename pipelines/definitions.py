"""The code location ``dagster dev`` loads (see ``[tool.dagster]`` in pyproject.toml).

Assets are collected from the ``assets.defs`` package, so a new stage module there is in the
graph without a line here; jobs, schedules, sensors and the automation policy are wired here.
The per-source assets are built for the registry plus the datasets declared in
``$GIRAFFE_DATASETS`` (``assets.sources.declared``), replacing the registry-only ones the scan
finds.
"""

from __future__ import annotations

import os

import dagster as dg

import assets.defs
from assets.defs.chatml import build_chatml_assets
from assets.defs.resources import default_resources
from assets.defs.sources import build_raw_assets
from assets.defs.tokens import build_token_counts
from assets.defs.video import build_video_frames
from assets.sources.declared import ENV_VAR, all_sources
from pipelines.automation import apply_automation, automation_sensor
from pipelines.jobs import all_jobs
from pipelines.schedules import apply_raw_freshness, nightly_refresh_schedule


def source_assets(datasets: str | None = None) -> list:
    """raw/<s> and chatml/<s> for every source, and video_frames / token_counts over all of
    them. ``datasets`` (default ``$GIRAFFE_DATASETS``) names a file of declared datasets."""
    specs = all_sources(datasets if datasets is not None else os.environ.get(ENV_VAR))
    return [
        *build_raw_assets(specs),
        *build_chatml_assets(specs),
        build_video_frames([s.name for s in specs if s.category == "video"]),
        build_token_counts([s.name for s in specs]),
    ]


def graph_assets(datasets: str | None = None) -> list:
    """Every asset (with its checks) defined in the Dagster layer, found by module scan, with
    the per-source ones built for the registry plus the declared datasets."""
    built = source_assets(datasets)
    keys = {k for a in built for k in a.keys}
    scanned = [a for a in dg.load_assets_from_package_module(assets.defs) if not set(a.keys) & keys]
    return [*built, *scanned]


# Set by ``giraffe demo`` / ``giraffe train`` before they load the code location in process, so
# their runs log through the compact console logger; the UI's and the daemon's keep Dagster's own.
CLI_CONSOLE_ENV = "GIRAFFE_CLI_CONSOLE"


def build_definitions(
    resources: dict | None = None, datasets: str | None = None, loggers: dict | None = None
) -> dg.Definitions:
    """Definitions with resources from the environment (read now, not at first import); any
    ``resources`` given replace those keys only. Each declared dataset becomes raw/<name> and
    chatml/<name> beside the registry's sources and flows through video frames, token counts,
    packing and the mixture."""
    return dg.Definitions(
        assets=apply_raw_freshness(apply_automation(graph_assets(datasets))),
        jobs=all_jobs,
        schedules=[nightly_refresh_schedule()],
        sensors=[automation_sensor()],
        resources={**default_resources(), **(resources or {})},
        loggers=loggers,
    )


def current_definitions() -> dg.Definitions:
    """The definitions for the environment of now (no arguments: what a code pointer calls);
    jobs log through the compact console logger when the CLI asks for it (``CLI_CONSOLE_ENV``)."""
    if os.environ.get(CLI_CONSOLE_ENV) == "1":
        from pipelines.console_log import compact_console_logger

        return build_definitions(loggers={"console": compact_console_logger})
    return build_definitions()


defs = build_definitions()
