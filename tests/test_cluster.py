"""The same definitions on a multi-worker engine: a backfill of every shard through the real
Dagster daemon, its run queue (QueuedRunCoordinator, two runs at once) and run launcher (one
process per run), with the instance config of dagster_home/dagster.cluster.yaml. The runs share
nothing but the data root and the instance's storage; what they write equals a single-process
run of the same shards, table for table and shard for shard."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from assets.defs.keys import BASE_MODEL_KEY, raw_key
from assets.defs.partitions import SHARD_KEYS
from assets.defs.resources import DataStore
from assets.sources.registry import SOURCES

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_YAML = ROOT / "dagster_home" / "dagster.cluster.yaml"
JOB = "shard_data"
# Columns that say how a value was obtained, not what it is: whether a shard found a video
# already sampled depends on which shard got there first.
HOW = {"cached"}


def test_cluster_config_is_valid_instance_config(tmp_path):
    from dagster._core.instance.config import dagster_instance_config

    (tmp_path / "dagster.yaml").write_text(CLUSTER_YAML.read_text())
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["run_launcher"]["class"] == "DefaultRunLauncher"
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 2
        assert type(instance.run_launcher).__name__ == "DefaultRunLauncher"


def shard_tables(root: Path) -> dict[str, list[str]]:
    """Every sharded table under ``root``, rows as JSON with the root spelled ``<root>``."""
    out = {}
    names = {"chatml": ["conversations", "rejected"], "video_frames": ["videos", "samples", "rejected"],
             "token_counts": ["token_counts", "rejected"]}
    for stage, tables in names.items():
        folders = [root / stage / s.name for s in SOURCES] if stage == "chatml" else [root / stage]
        for folder in folders:
            for shard in SHARD_KEYS:
                for table in tables:
                    path = folder / "shards" / shard / f"{table}.parquet"
                    rows = pq.read_table(path).to_pylist()
                    text = [json.dumps({k: v for k, v in r.items() if k not in HOW}, sort_keys=True, default=str)
                            for r in rows]
                    out[str(path.relative_to(root))] = [t.replace(str(root), "<root>") for t in text]
    return out


def upstream(instance: dg.DagsterInstance, root: Path) -> None:
    """What the shards read: every raw source and the base model (unpartitioned, in process)."""
    from pipelines.definitions import build_definitions

    job = build_definitions({"store": DataStore(root=str(root))}).resolve_implicit_global_asset_job_def()
    keys = [raw_key(s.name) for s in SOURCES] + [BASE_MODEL_KEY]
    assert job.execute_in_process(instance=instance, asset_selection=keys).success


def single_process(root: Path) -> None:
    """The reference: every shard in this process, one after the other."""
    from pipelines.definitions import build_definitions

    with dg.instance_for_test() as instance:
        upstream(instance, root)
        job = build_definitions({"store": DataStore(root=str(root))}).resolve_job_def(JOB)
        for shard in SHARD_KEYS:
            assert job.execute_in_process(instance=instance, partition_key=shard).success, shard


def overlap(records) -> int:
    """The most runs in progress at one moment."""
    edges = sorted([(r.start_time, 1) for r in records] + [(r.end_time, -1) for r in records], key=lambda e: (e[0], e[1]))
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


@pytest.mark.slow
def test_backfill_through_the_daemon_equals_a_single_process_run(tmp_path):
    home, data = tmp_path / "home", tmp_path / "cluster_data"
    home.mkdir()
    (home / "dagster.yaml").write_text(CLUSTER_YAML.read_text())
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        "load_from:\n"
        f"  - python_module:\n      module_name: pipelines.definitions\n      working_directory: {ROOT}\n"
        f"      executable_path: {sys.executable}\n      location_name: giraffe\n"
    )
    env = {**os.environ, "DAGSTER_HOME": str(home), "GIRAFFE_DATA_ROOT": str(data), "PYTHONPATH": str(ROOT)}
    env.pop("GIRAFFE_DATASETS", None)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        upstream(instance, data)
    log = open(tmp_path / "daemon.log", "w")
    daemon = subprocess.Popen([sys.executable, "-m", "dagster._daemon", "run", "-w", str(workspace)], env=env, cwd=tmp_path,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    started = time.monotonic()
    try:
        backfill = subprocess.run(
            [sys.executable, "-m", "dagster", "job", "backfill", "-w", str(workspace), "-j", JOB, "--all", "--noprompt"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )
        assert backfill.returncode == 0, backfill.stdout + backfill.stderr
        with dg.DagsterInstance.from_config(str(home)) as instance:
            deadline = time.monotonic() + 900
            while True:
                records = instance.get_run_records(dg.RunsFilter(job_name=JOB))
                if len(records) == len(SHARD_KEYS) and all(r.dagster_run.is_finished for r in records):
                    break
                assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
                assert time.monotonic() < deadline, [(r.dagster_run.tags.get("dagster/partition"), r.dagster_run.status) for r in records]
                time.sleep(2)
            seconds = time.monotonic() - started
            statuses = {r.dagster_run.tags["dagster/partition"]: r.dagster_run.status for r in records}
            assert statuses == {k: dg.DagsterRunStatus.SUCCESS for k in SHARD_KEYS}, statuses
            assert all(r.dagster_run.tags.get("dagster/backfill") for r in records)
            # The queue held them to two at a time, and two did run at once.
            assert overlap(records) == 2
            # Each run in a process of its own, none of them this test's.
            pids = set()
            for r in records:
                events = instance.all_logs(r.dagster_run.run_id, of_type=dg.DagsterEventType.RUN_START)
                pids |= {e.dagster_event.pid for e in events}
            assert len(pids) == len(SHARD_KEYS) and os.getpid() not in pids
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
        log.close()
    print(f"\n{len(SHARD_KEYS)} shard runs through the daemon, two at a time, in {seconds:.0f} s")

    reference = tmp_path / "single_data"
    single_process(reference)
    cluster, single = shard_tables(data), shard_tables(reference)
    assert sorted(cluster) == sorted(single)
    for name in single:
        assert cluster[name] == single[name], name
    # Not empty: the shards hold every counted sample between them.
    counted = sum(len(v) for k, v in single.items() if k.endswith("token_counts.parquet"))
    assert counted == sum(pq.read_metadata(p).num_rows for p in (reference / "token_counts" / "shards").glob("*/token_counts.parquet"))
    assert counted > 50
