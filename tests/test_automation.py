"""Nightly refresh and automation: a refresh that fetched the same content requests nothing
downstream; a changed source requests its ChatML shards and what depends on them, and nothing
else (no shard of another source)."""

import datetime

import dagster as dg
import pytest

from assets.defs.keys import EVAL_GROUP, PACKING_GROUP, TRAINING_GROUP, chatml_key, raw_key
from assets.defs.partitions import SHARD_KEYS
from assets.defs.resources import DataStore, SourceHub
from assets.sources.registry import SOURCES
from pipelines.automation import AUTOMATION_SENSOR_NAME, condition_for
from pipelines.definitions import build_definitions
from pipelines.schedules import DEFAULT_REFRESH_CRON, REFRESH_SCHEDULE_NAME, nightly_refresh_schedule

# evaluate_automation_conditions itself selects with a beta parameter.
pytestmark = pytest.mark.filterwarnings("ignore::dagster.BetaWarning")

DATA_VERSION_TAG = "dagster/data_version"
SOURCE = "longalpaca"  # the smallest text source: fetch and normalise take well under a second
VIDEO_SOURCE = "mlvu"
TOKEN_COUNTS = dg.AssetKey(["token_counts"])
VIDEO_FRAMES = dg.AssetKey(["video_frames"])


def _requested(result) -> set[str]:
    return {k.to_user_string() for r in result.results for k in [r.key] if result.get_num_requested(k)}


def _materialize(keys, instance, store, seed=0):
    """Run ``keys`` for real (the hub's seed draws another embedded sample, i.e. new content):
    unpartitioned keys in one run, sharded keys once per shard. Returns key -> data version
    (sharded: key -> {shard: data version})."""
    defs = build_definitions({"store": store, "hub": SourceHub(seed=seed)})
    graph = defs.resolve_asset_graph()
    versions: dict = {}
    plain = [k for k in keys if graph.get(k).partitions_def is None]
    sharded = [k for k in keys if graph.get(k).partitions_def is not None]
    runs = ([(plain, None)] if plain else []) + [(sharded, shard) for shard in (SHARD_KEYS if sharded else [])]
    for selection, shard in runs:
        job = defs.resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(instance=instance, asset_selection=selection, partition_key=shard)
        assert result.success
        for e in result.get_asset_materialization_events():
            mat = e.event_specific_data.materialization
            if shard is None:
                versions[mat.asset_key] = mat.tags[DATA_VERSION_TAG]
            else:
                versions.setdefault(mat.asset_key, {})[shard] = mat.tags[DATA_VERSION_TAG]
    return versions


def _report_everything(defs, instance, skip=()):
    """A runless materialisation with a data version for every partition of every asset but ``skip``."""
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        if key in skip:
            continue
        partitions = graph.get(key).partitions_def
        for p in partitions.get_partition_keys() if partitions else [None]:
            instance.report_runless_asset_event(
                dg.AssetMaterialization(key, partition=p, tags={DATA_VERSION_TAG: f"{key.to_user_string()}@1"})
            )


def _shards(result, key) -> set[str]:
    return set(result.get_requested_partitions(key)) if result.get_num_requested(key) else set()


@pytest.fixture
def refreshed(tmp_path):
    """An instance where the whole graph has been materialised once: ``raw/longalpaca`` and
    ``chatml/longalpaca`` (every shard) for real, every other asset (every partition) reported
    (runless) with a data version."""
    store = DataStore(root=str(tmp_path / "data"))
    defs = build_definitions({"store": store, "hub": SourceHub()})
    with dg.instance_for_test() as instance:
        real = [raw_key(SOURCE), chatml_key(SOURCE)]
        versions = _materialize(real, instance, store)
        assert set(versions[chatml_key(SOURCE)]) == set(SHARD_KEYS)
        _report_everything(defs, instance, skip=real)
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert first.total_requested == 0, _requested(first)  # nothing missing, nothing changed yet
        yield defs, instance, store, versions, first.cursor


def test_every_derived_asset_has_a_policy_and_training_is_manual():
    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if key.path[0] in ("raw", "model", "checkpoint"):
            assert node.automation_condition is None, key  # schedule / chosen / GPU-gated
        else:
            assert node.automation_condition is not None, key
            assert node.automation_condition.get_label() == condition_for(key, node.group_name).get_label()
            if node.automation_condition.get_label() == "on_content_change":
                assert node.code_version, key  # data version = hash(code version, inputs)
    assert condition_for(dg.AssetKey(["checkpoint"]), TRAINING_GROUP) is None
    assert condition_for(dg.AssetKey(["etvlm_mixture"]), PACKING_GROUP).get_label() == "on_content_change"
    assert condition_for(dg.AssetKey(["eval", "mmbench"]), EVAL_GROUP).get_label() == "eager"
    sensor = defs.resolve_sensor_def(AUTOMATION_SENSOR_NAME)
    assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_unchanged_content_keeps_data_versions_and_requests_nothing(refreshed):
    defs, instance, store, versions, cursor = refreshed
    # The nightly refresh fetches the source again: same content hash, same data version.
    again = _materialize([raw_key(SOURCE)], instance, store)
    assert again[raw_key(SOURCE)] == versions[raw_key(SOURCE)]
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    assert result.total_requested == 0, _requested(result)
    # ChatML rerun on the same raw data keeps its data version too (code_version is set), so
    # even a manual rerun wakes nothing further down.
    chatml_again = _materialize([chatml_key(SOURCE)], instance, store)
    assert chatml_again[chatml_key(SOURCE)] == versions[chatml_key(SOURCE)]
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert result.total_requested == 0, _requested(result)


def test_changed_content_requests_chatml_and_what_depends_on_it(refreshed):
    defs, instance, store, versions, cursor = refreshed
    # A new upstream release: the embedded sample drawn with another seed has other content.
    changed = _materialize([raw_key(SOURCE)], instance, store, seed=1)
    assert changed[raw_key(SOURCE)] != versions[raw_key(SOURCE)]
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    assert _requested(result) == {f"chatml/{SOURCE}", "token_counts"}
    # Every shard of the changed source (raw is one table), and of the counts (each shard counts
    # every source's samples of that shard); no shard of any other source.
    assert _shards(result, chatml_key(SOURCE)) == set(SHARD_KEYS)
    assert _shards(result, TOKEN_COUNTS) == set(SHARD_KEYS)
    assert not any(_shards(result, chatml_key(s.name)) for s in SOURCES if s.name != SOURCE)
    # Handled: the next tick does not request it again.
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert result.total_requested == 0, _requested(result)


def test_changed_video_source_reaches_frames_and_counts(refreshed):
    defs, instance, _, _, cursor = refreshed
    instance.report_runless_asset_event(dg.AssetMaterialization(raw_key(VIDEO_SOURCE), tags={DATA_VERSION_TAG: "new"}))
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    assert _requested(result) == {f"chatml/{VIDEO_SOURCE}", "video_frames", "token_counts"}
    assert _shards(result, VIDEO_FRAMES) == _shards(result, chatml_key(VIDEO_SOURCE)) == set(SHARD_KEYS)
    # Same version reported again (a refresh that found the same content): nothing.
    instance.report_runless_asset_event(dg.AssetMaterialization(raw_key(VIDEO_SOURCE), tags={DATA_VERSION_TAG: "new"}))
    for shard in SHARD_KEYS:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(chatml_key(VIDEO_SOURCE), partition=shard, tags={DATA_VERSION_TAG: f"chatml/{VIDEO_SOURCE}@1"})
        )
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert result.total_requested == 0, _requested(result)


def test_nightly_schedule_requests_the_raw_refresh_at_two():
    defs = build_definitions()
    schedule = defs.resolve_schedule_def(REFRESH_SCHEDULE_NAME)
    assert schedule.cron_schedule == DEFAULT_REFRESH_CRON == "0 2 * * *"
    assert schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    job = defs.resolve_job_def(schedule.job_name)
    assert job.name == "refresh_sources"
    assert set(job.asset_layer.executable_asset_keys) == {raw_key(s.name) for s in SOURCES}

    when = datetime.datetime(2025, 3, 4, 2, 0, tzinfo=datetime.timezone.utc)
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
        data = schedule.evaluate_tick(context)
    assert len(data.run_requests) == 1
    request = data.run_requests[0]
    assert request.tags["giraffe/trigger"] == REFRESH_SCHEDULE_NAME

    from dagster._utils.schedules import cron_string_iterator

    after = datetime.datetime(2025, 3, 4, 13, 30, tzinfo=datetime.timezone.utc).timestamp()
    ticks = cron_string_iterator(after, schedule.cron_schedule, schedule.execution_timezone)
    assert [next(ticks).isoformat() for _ in range(2)] == ["2025-03-05T02:00:00+00:00", "2025-03-06T02:00:00+00:00"]


def test_refresh_cron_and_timezone_come_from_the_environment():
    schedule = nightly_refresh_schedule({"GIRAFFE_REFRESH_CRON": "30 3 * * 1-5", "GIRAFFE_REFRESH_TIMEZONE": "Europe/Paris"})
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("30 3 * * 1-5", "Europe/Paris")
    with pytest.raises(ValueError, match="GIRAFFE_REFRESH_CRON"):
        nightly_refresh_schedule({"GIRAFFE_REFRESH_CRON": "every night"})
    with pytest.raises(ValueError, match="GIRAFFE_REFRESH_TIMEZONE"):
        nightly_refresh_schedule({"GIRAFFE_REFRESH_TIMEZONE": "Mars/Olympus"})


def test_policy_carries_to_the_mixture_and_to_evals_not_to_training():
    """The stages still to come, as stand-ins with the planned keys and partitions: a changed
    token count re-packs every stage and re-mixes it, training waits for a person, and a new
    checkpoint partition is evaluated (that partition only) and ranked."""
    from assets.defs.keys import CHECKPOINT_KEY, LEADERBOARD_GROUP, VIDEO_GROUP
    from assets.defs.partitions import STAGES, checkpoint_partitions, mixture_to_checkpoint, stage_partitions
    from assets.defs.pools import GPU_POOL
    from pipelines.automation import apply_automation

    @dg.asset(key=TOKEN_COUNTS, group_name=VIDEO_GROUP)
    def counts(): ...

    @dg.asset(key="packed", deps=[TOKEN_COUNTS], partitions_def=stage_partitions, code_version="1", group_name=PACKING_GROUP)
    def packed(): ...

    @dg.asset(key="etvlm_mixture", deps=["packed"], partitions_def=stage_partitions, code_version="1", group_name=PACKING_GROUP)
    def mixture(): ...

    @dg.asset(key=CHECKPOINT_KEY, partitions_def=checkpoint_partitions, pool=GPU_POOL, group_name=TRAINING_GROUP,
              ins={"etvlm_mixture": dg.AssetIn(partition_mapping=mixture_to_checkpoint)})
    def checkpoint(etvlm_mixture): ...

    @dg.asset(key=["eval", "needle"], deps=[CHECKPOINT_KEY], partitions_def=checkpoint_partitions, group_name=EVAL_GROUP)
    def needle(): ...

    @dg.asset(key="leaderboard", deps=[dg.AssetKey(["eval", "needle"])], group_name=LEADERBOARD_GROUP)
    def leaderboard(): ...

    assets = apply_automation([counts, packed, mixture, checkpoint, needle, leaderboard])
    graph = dg.Definitions(assets=assets).resolve_asset_graph()
    assert graph.get(CHECKPOINT_KEY).automation_condition is None
    with dg.instance_for_test() as instance:
        def report(key, partitions=(None,), version="1"):
            for p in partitions:
                instance.report_runless_asset_event(
                    dg.AssetMaterialization(key, partition=p, tags={DATA_VERSION_TAG: version})
                )

        ckpts = checkpoint_partitions.get_partition_keys()
        report(TOKEN_COUNTS)
        report(dg.AssetKey("packed"), STAGES)
        report(dg.AssetKey("etvlm_mixture"), STAGES)
        report(CHECKPOINT_KEY, ckpts)
        report(dg.AssetKey(["eval", "needle"]), ckpts)
        report(dg.AssetKey("leaderboard"))
        result = dg.evaluate_automation_conditions(defs=assets, instance=instance)
        assert result.total_requested == 0

        report(TOKEN_COUNTS, version="2")
        result = dg.evaluate_automation_conditions(defs=assets, instance=instance, cursor=result.cursor)
        assert result.get_requested_partitions(dg.AssetKey("packed")) == set(STAGES)
        assert result.get_requested_partitions(dg.AssetKey("etvlm_mixture")) == set(STAGES)
        assert result.get_num_requested(CHECKPOINT_KEY) == 0  # training is launched by a person

        report(CHECKPOINT_KEY, ["v2pe|8k"], version="retrained")
        result = dg.evaluate_automation_conditions(defs=assets, instance=instance, cursor=result.cursor)
        assert result.get_requested_partitions(dg.AssetKey(["eval", "needle"])) == {"v2pe|8k"}
        assert result.get_num_requested(CHECKPOINT_KEY) == 0
        # The leaderboard (unpartitioned) cannot share that run; it follows once the score lands.
        assert result.get_num_requested(dg.AssetKey("leaderboard")) == 0
        report(dg.AssetKey(["eval", "needle"]), ["v2pe|8k"], version="scored")
        result = dg.evaluate_automation_conditions(defs=assets, instance=instance, cursor=result.cursor)
        assert _requested(result) == {"leaderboard"}


def test_the_automation_badge_follows_the_sensor():
    """The UI's job pages read the pre-sensor daemon's pause flag ("Auto-materialize off" on a new
    instance, although the automation sensor runs): prepare_home sets it from the sensor's state."""
    from dagster._core.remote_origin import (
        InProcessCodeLocationOrigin,
        LoadableTargetOrigin,
        RemoteInstigatorOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._core.scheduler.instigation import InstigatorState, InstigatorStatus, InstigatorType
    from dagster._daemon.asset_daemon import get_auto_materialize_paused

    from pipelines.automation import automation_running, sync_automation_badge

    with dg.instance_for_test() as instance:
        assert get_auto_materialize_paused(instance)  # what the UI shows on a new instance: "off"
        assert automation_running(instance) and sync_automation_badge(instance)
        assert not get_auto_materialize_paused(instance)  # now "on", as the sensor is (default RUNNING)

        location = InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="pipelines.definitions"))
        origin = RemoteInstigatorOrigin(RemoteRepositoryOrigin(location, "__repository__"), AUTOMATION_SENSOR_NAME)
        instance.add_instigator_state(InstigatorState(origin, InstigatorType.SENSOR, InstigatorStatus.STOPPED))
        assert not automation_running(instance) and not sync_automation_badge(instance)
        assert get_auto_materialize_paused(instance)  # a user stopped the sensor: "off" is true now


def test_raw_sources_carry_the_refresh_freshness_policy():
    from pipelines.schedules import raw_freshness_policy, refresh_period

    assert refresh_period(DEFAULT_REFRESH_CRON, "UTC") == datetime.timedelta(days=1)
    assert refresh_period("0 2 * * 1-5", "UTC") == datetime.timedelta(days=3)  # over the weekend
    policy = raw_freshness_policy({})
    assert policy.fail_window.to_timedelta() == datetime.timedelta(hours=30)
    assert policy.warn_window.to_timedelta() == datetime.timedelta(hours=25)
    hourly = raw_freshness_policy({"GIRAFFE_REFRESH_CRON": "0 * * * *"})
    assert hourly.fail_window.to_timedelta() == datetime.timedelta(hours=2)
    graph = build_definitions().resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert (node.freshness_policy == policy) == (key.path[0] == "raw"), key


def test_one_changed_shard_requests_that_shard_downstream_and_every_stage(refreshed):
    """A shard is the unit of recomputation: a new version of one ChatML shard requests the token
    counts of that shard only; packing, which reads every shard, then re-packs every stage."""
    defs, instance, _, _, cursor = refreshed
    changed = SHARD_KEYS[1]
    instance.report_runless_asset_event(
        dg.AssetMaterialization(chatml_key(SOURCE), partition=changed, tags={DATA_VERSION_TAG: "other content"})
    )
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    assert _shards(result, TOKEN_COUNTS) == {changed}
    assert _requested(result) - {"packed", "etvlm_mixture"} == {"token_counts"}
    instance.report_runless_asset_event(
        dg.AssetMaterialization(TOKEN_COUNTS, partition=changed, tags={DATA_VERSION_TAG: "recounted"})
    )
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    from assets.defs.partitions import STAGES

    assert _shards(result, dg.AssetKey("packed")) == set(STAGES)
    assert result.get_num_requested(TOKEN_COUNTS) == 0
