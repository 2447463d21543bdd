"""Run a job of the code location in this process, as a run that belongs to the code location.

``JobDefinition.execute_in_process`` records runs without a code-location origin, so the UI
(which lists a job's runs, and draws the Overview timeline, by the run's repository label
``__repository__@giraffe``) shows them only on the global Runs page (dagster issue 17707:
``dagster job execute`` has the same gap). ``dagster job launch`` creates the run the way the
UI does, from the code location's remote job, but hands it to the run coordinator (queued runs
wait for a daemon). :func:`execute_job` does what ``job launch`` does up to ``create_run`` (the
remote job of the code location, its execution plan snapshot, ``remote_job_origin`` and
``job_code_origin``) and then executes that run synchronously here (``execute_run``, the
in-process executor), so ``giraffe demo`` and ``giraffe train`` keep their console output and
their exit codes while their runs are listed under their jobs like the daemon's.

The code location is loaded in process under the name the UI loads it with
(``[tool.dagster] code_location_name``), from ``pipelines.definitions.current_definitions``, which
reads the environment when it is called: the CLI sets ``GIRAFFE_DATA_ROOT`` and friends first,
and this module sets ``GIRAFFE_CLI_CONSOLE`` so the jobs log through the compact console logger
(``pipelines.console_log``) under the usual ``console`` name.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOCATION_NAME = "giraffe"  # = [tool.dagster] code_location_name in pyproject.toml
IN_PROCESS_EXECUTION = {"execution": {"config": {"in_process": {}}}}

_locations: dict[str, Any] = {}


def _code_location(instance: dg.DagsterInstance):
    """The code location loaded in this process (once per instance and process)."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    key = str(instance.root_directory)
    if key not in _locations:
        from pipelines.definitions import CLI_CONSOLE_ENV

        os.environ[CLI_CONSOLE_ENV] = "1"  # the CLI's runs log compact console lines
        origin = InProcessCodeLocationOrigin(
            LoadableTargetOrigin(
                module_name="pipelines.definitions",
                attribute="current_definitions",  # called on every load: the environment of now
                working_directory=str(PROJECT_ROOT),
            ),
            location_name=LOCATION_NAME,
        )
        location = origin.create_location(instance)
        _locations[key] = location
        atexit.register(location.cleanup)
    return _locations[key]


def repository_label() -> str:
    """The label the UI filters a job's runs by (``<repository>@<code location>``)."""
    return f"__repository__@{LOCATION_NAME}"


def execution_config(job_def: dg.JobDefinition) -> dict[str, Any]:
    """The run config that keeps ``job_def``'s run in this process. Only Dagster's default
    executor has the "in_process" choice (it would otherwise start a process per step); a job
    that names its own executor runs with that executor's config."""
    return dict(IN_PROCESS_EXECUTION) if job_def.executor_def is dg.multi_or_in_process_executor else {}


def execute_job(
    instance: dg.DagsterInstance,
    job_name: str,
    run_config: Mapping[str, Any] | None = None,
    partition_key: str | None = None,
    tags: Mapping[str, str] | None = None,
):
    """Create ``job_name``'s run from the code location and execute it here; returns the
    ``JobExecutionResult`` (``success``, ``run_id``, ``all_events``, ...). Failures are in the
    result, not raised, as with ``execute_in_process(raise_on_error=False)``."""
    from dagster._core.execution.api import execute_run

    location = _code_location(instance)
    [repo] = location.get_repositories().values()
    remote_job = repo.get_full_job(job_name)
    recon_job = location.get_reconstructable_job(repo.name, job_name)
    job_def = recon_job.get_definition()
    config = {**execution_config(job_def), **(run_config or {})}
    run_tags = {**remote_job.tags, **(tags or {})}
    if partition_key is not None:
        if job_def.partitions_def is None or partition_key not in job_def.partitions_def.get_partition_keys():
            raise dg.DagsterUnknownPartitionError(f"job {job_name!r} has no partition {partition_key!r}")
        run_tags.update(job_def.get_tags_for_partition_key(partition_key, selected_asset_keys=None))
    plan = location.get_execution_plan(remote_job, config, step_keys_to_execute=None, known_state=None, instance=instance)
    run = instance.create_run(
        job_name=job_name,
        run_id=None,
        run_config=config,
        resolved_op_selection=None,
        step_keys_to_execute=None,
        op_selection=None,
        status=None,
        root_run_id=None,
        parent_run_id=None,
        tags=run_tags,
        job_snapshot=remote_job.job_snapshot,
        execution_plan_snapshot=plan.execution_plan_snapshot,
        parent_job_snapshot=remote_job.parent_job_snapshot,
        remote_job_origin=remote_job.get_remote_origin(),
        job_code_origin=remote_job.get_python_origin(),
        asset_selection=None,
        asset_check_selection=None,
        asset_graph=repo.asset_graph,
    )
    return execute_run(recon_job, run, instance, raise_on_error=False)
