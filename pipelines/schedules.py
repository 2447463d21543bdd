"""The nightly refresh: re-fetch the raw sources on a cron (02:00 by default).

Only the raw sources run on the schedule; downstream assets follow through the automation
policy (``pipelines/automation.py``) where a source's content hash changed. Settings come from
the environment, read when the code location loads:

* ``GIRAFFE_REFRESH_CRON``: cron string (default ``0 2 * * *``, every day at 02:00)
* ``GIRAFFE_REFRESH_TIMEZONE``: IANA zone the cron is read in (default ``UTC``)

The refresh is also a promise about the raw sources, so each carries a freshness policy derived
from the same cron (``raw_freshness_policy``): it warns when a source is a little older than the
longest gap between two refreshes and fails when a refresh is clearly missed (gap + up to 6 h).
The Dagster UI shows the policy and the state on every raw asset; the daemon evaluates it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
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


FRESHNESS_GRACE = timedelta(hours=6)
RAW_PREFIX = "raw"


def refresh_period(cron: str, timezone: str, ticks: int = 60) -> timedelta:
    """The longest gap between two consecutive refreshes over the next ``ticks`` ticks (a
    weekday-only cron has a 3-day gap over the weekend)."""
    from dagster._utils.schedules import cron_string_iterator

    times = []
    for tick in cron_string_iterator(time.time(), cron, timezone):
        times.append(tick)
        if len(times) > ticks:
            break
    return max(b - a for a, b in zip(times, times[1:]))


def raw_freshness_policy(env: Mapping[str, str] | None = None) -> dg.FreshnessPolicy:
    """Fresh while the latest fetch is younger than the refresh period plus a grace: warn
    after a sixth of the grace, fail after the whole grace (min(6 h, one period))."""
    cron, timezone = refresh_settings(env)
    period = refresh_period(cron, timezone)
    grace = min(FRESHNESS_GRACE, period)
    return dg.FreshnessPolicy.time_window(fail_window=period + grace, warn_window=period + grace / 6)


def apply_raw_freshness(assets: Iterable, env: Mapping[str, str] | None = None) -> Sequence:
    """The same assets with the refresh's freshness policy on every raw source without one."""
    policy = raw_freshness_policy(env)

    def _apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.key.path[0] != RAW_PREFIX or spec.freshness_policy is not None:
            return spec
        return spec.replace_attributes(freshness_policy=policy)

    return dg.map_asset_specs(_apply, list(assets))
