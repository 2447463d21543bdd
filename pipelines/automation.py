"""What recomputes by itself, and when: the automation policy of the graph in one place.

The nightly refresh (``pipelines/schedules.py``) re-materialises only the raw sources. Each raw
asset reports ``DataVersion(content hash)``, so a source whose content did not change keeps its
data version. Everything derived from the data then reacts to *content*, not to runs:

* ``on_content_change()`` requests an asset when a dependency's data version changed since the
  previous evaluation (or the dependency is itself being requested on this tick, so a change
  flows down the graph in one run). A refresh that fetched identical content requests nothing.
* Derived assets carry a ``code_version``, so their data version is a hash of the code version
  and their inputs' data versions: rerunning one on unchanged inputs keeps its data version and
  does not wake its own downstream either.

Policy by group (``AUTOMATION_POLICY``, keyed by the groups of ``assets/defs/keys.py``;
``AUTOMATION_EXCEPTIONS`` for the one asset that differs from its group):

=====================  ===========================  ==========================================
group (assets)         condition                    why
=====================  ===========================  ==========================================
``raw_sources``        none (the nightly schedule)  fetching is what the schedule is for
``model``              none (manual)                a base model is chosen, not refreshed
``chatml``             ``on_content_change()``      normalise a source whose content changed
``video`` (frames,     ``on_content_change()``      frames follow the video sources' ChatML;
token_counts)                                       lengths follow ChatML, frames and the model
``packing`` (packed,   ``on_content_change()``      shards follow token counts (per stage), the
etvlm_mixture)                                      mixture follows the shards
``training``           none (manual, ``gpu`` pool)  training is expensive and gated by the GPU
``evaluation``,        ``eager()``                  re-score whenever a checkpoint materialises
``lmms_eval``
``benchmarks``         ``on_missing()``             benchmark items are fetched once
``leaderboard``        ``on_any_score``             re-rank whenever a score lands (eager that
                                                    does not wait for never-trained partitions)
``eval_base``          ``eager()`` (exception)      re-score when the base model changes
=====================  ===========================  ==========================================

An asset whose module already sets an ``automation_condition`` keeps it; groups not in the
policy stay manual. ``apply_automation`` is applied in ``pipelines/definitions.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import dagster as dg

from assets.defs.keys import (
    BENCHMARK_GROUP,
    CHATML_GROUP,
    EVAL_BASE_KEY,
    EVAL_GROUP,
    LEADERBOARD_GROUP,
    LMMS_EVAL_GROUP,
    MODEL_GROUP,
    PACKING_GROUP,
    RAW_GROUP,
    TRAINING_GROUP,
    VIDEO_GROUP,
)

AC = dg.AutomationCondition

AUTOMATION_SENSOR_NAME = "giraffe_automation"


def any_deps_content_changed() -> dg.AutomationCondition:
    """True when a dependency's data version changed since the previous tick, or the dependency
    is requested on this tick (so a changed source carries through the chain in one run)."""
    return AC.any_deps_match(AC.data_version_changed() | AC.will_be_requested()).with_label(
        "any_deps_content_changed"
    )


def on_content_change() -> dg.AutomationCondition:
    """``eager()`` with content in place of runs: recompute on a changed dependency data version
    (or when newly missing), never while a dependency is missing or in progress."""
    return (
        AC.in_latest_time_window()
        & (AC.newly_missing() | any_deps_content_changed()).since_last_handled()
        & ~AC.any_deps_missing()
        & ~AC.any_deps_in_progress()
        & ~AC.in_progress()
    ).with_label("on_content_change")


def on_new_checkpoint() -> dg.AutomationCondition:
    """Evaluations and the leaderboard: any new materialisation upstream (a retrained checkpoint
    is a new model even when its inputs are the same, so runs, not data versions, count)."""
    return AC.eager()


def on_missing() -> dg.AutomationCondition:
    """Benchmark data: fetched once when missing (a benchmark's items do not change nightly)."""
    return AC.on_missing()


def on_any_score() -> dg.AutomationCondition:
    """The leaderboard: ``eager()`` that does not wait for every partition upstream (stages a
    recipe never trains stay missing forever), re-ranking whenever any score lands."""
    return AC.eager().without(~AC.any_deps_missing()).with_label("on_any_score")


Factory = Callable[[], dg.AutomationCondition] | None  # None: manual on purpose

AUTOMATION_POLICY: Mapping[str, Factory] = {
    RAW_GROUP: None,
    MODEL_GROUP: None,
    CHATML_GROUP: on_content_change,
    VIDEO_GROUP: on_content_change,
    PACKING_GROUP: on_content_change,
    TRAINING_GROUP: None,
    BENCHMARK_GROUP: on_missing,
    EVAL_GROUP: on_new_checkpoint,
    LMMS_EVAL_GROUP: on_new_checkpoint,
    LEADERBOARD_GROUP: on_any_score,
}
# The leaderboard group's base-model scores wait for their inputs like any evaluation.
AUTOMATION_EXCEPTIONS: Mapping[dg.AssetKey, Factory] = {EVAL_BASE_KEY: on_new_checkpoint}


def condition_for(key: dg.AssetKey, group: str | None) -> dg.AutomationCondition | None:
    """The policy's condition for an asset of ``group`` (None: manual or not in the policy)."""
    factory = AUTOMATION_EXCEPTIONS[key] if key in AUTOMATION_EXCEPTIONS else AUTOMATION_POLICY.get(group or "")
    return factory() if factory is not None else None


def apply_automation(assets: Iterable[dg.AssetsDefinition | dg.AssetSpec]) -> Sequence:
    """The same assets with the policy's automation condition on every spec that has none."""

    def _apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        condition = condition_for(spec.key, spec.group_name)
        if spec.automation_condition is not None or condition is None:
            return spec
        return spec.replace_attributes(automation_condition=condition)

    return dg.map_asset_specs(_apply, list(assets))


def automation_sensor(minimum_interval_seconds: int = 60) -> dg.AutomationConditionSensorDefinition:
    """The daemon's sensor that evaluates every asset's condition (running by default)."""
    return dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR_NAME,
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=minimum_interval_seconds,
        description="Carries a changed source's content down the graph (see pipelines/automation.py).",
    )


def automation_running(instance: dg.DagsterInstance, sensor_name: str = AUTOMATION_SENSOR_NAME) -> bool:
    """Whether the automation sensor runs on ``instance``: its stored state, or its default
    (RUNNING) when nobody has started or stopped it yet."""
    from dagster._core.scheduler.instigation import InstigatorStatus, InstigatorType

    states = [
        s for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR) if s.instigator_name == sensor_name
    ]
    return not states or any(s.status in (InstigatorStatus.RUNNING, InstigatorStatus.DECLARED_IN_CODE) for s in states)


def sync_automation_badge(instance: dg.DagsterInstance) -> bool:
    """Make the UI's "Auto-materialize on/off" badge say whether the automation sensor runs.

    Dagster 1.13's job pages show that badge for every job with an automation condition, read
    from the instance-wide pause flag of the pre-sensor asset daemon (``autoMaterializePaused``
    in GraphQL), which a new instance leaves unset, i.e. "off". With automation sensors (the
    default, ``auto_materialize.use_sensors``) the daemon ignores that flag: only the sensor's
    own state matters. So the flag is set to the sensor's state each time the CLI prepares the
    instance (``giraffe ui``, ``giraffe demo``, ``giraffe train``). Returns "on"."""
    from dagster._daemon.asset_daemon import set_auto_materialize_paused

    running = automation_running(instance)
    set_auto_materialize_paused(instance, not running)
    return running
