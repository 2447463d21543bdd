"""The nightly refresh: re-fetch the raw sources on a cron (02:00 by default).

Only the raw sources run on the schedule; downstream assets follow through the automation
policy (``pipelines/automation.py``) where a source's content hash changed. Settings come from
the environment, read when the code location loads:

* ``GIRAFFE_REFRESH_CRON``: cron string (default ``0 2 * * *``, every day at 02:00)
* ``GIRAFFE_REFRESH_TIMEZONE``: IANA zone the cron is read in (default ``UTC``)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg

from pipelines.jobs import refresh

DEFAULT_REFRESH_CRON = "0 2 * * *"
DEFAULT_REFRESH_TIMEZONE = "UTC"
REFRESH_SCHEDULE_NAME = "nightly_refresh"


def refresh_settings(env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(cron, timezone) from the environment, checked so a typo fails at load with its name."""
    env = os.environ if env is None else env
    cron = env.get("GIRAFFE_REFRESH_CRON", "").strip() or DEFAULT_REFRESH_CRON
    timezone = env.get("GIRAFFE_REFRESH_TIMEZONE", "").strip() or DEFAULT_REFRESH_TIMEZONE
    from dagster._utils.schedules import is_valid_cron_string

    if not is_valid_cron_string(cron):
        raise ValueError(f"GIRAFFE_REFRESH_CRON={cron!r} is not a valid cron string (e.g. {DEFAULT_REFRESH_CRON!r})")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"GIRAFFE_REFRESH_TIMEZONE={timezone!r} is not an IANA time zone") from exc
    return cron, timezone


def nightly_refresh_schedule(env: Mapping[str, str] | None = None) -> dg.ScheduleDefinition:
    """The schedule that runs ``refresh_sources`` (running by default once the daemon is up)."""
    cron, timezone = refresh_settings(env)
    return dg.ScheduleDefinition(
        name=REFRESH_SCHEDULE_NAME,
        job=refresh,
        cron_schedule=cron,
        execution_timezone=timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        tags={"giraffe/trigger": REFRESH_SCHEDULE_NAME},
        description=f"Re-fetch every raw source at `{cron}` ({timezone}); downstream recomputes only "
        "where a source's content hash changed.",
    )
