"""The project's instance (dagster_home/dagster.yaml): run queue, GPU pool, retries, storage."""

from pathlib import Path

import dagster as dg
import pytest

from assets.defs.pools import GPU_POOL, apply_pool_limits
from assets.defs.sources import DOWNLOAD_RETRY, raw_assets

PROJECT_YAML = Path(__file__).resolve().parent.parent / "dagster_home" / "dagster.yaml"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh DAGSTER_HOME prepared the way `giraffe demo` / `giraffe ui` prepare one."""
    from pipelines.instance import prepare_home

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # restored after the test
    prepare_home(tmp_path / "home")
    return tmp_path / "home"


def test_instance_has_run_queue_gpu_pool_and_retries(home):
    assert (home / "dagster.yaml").read_text() == PROJECT_YAML.read_text()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        config = instance.get_concurrency_config()
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert config.run_queue_config.max_concurrent_runs == 4
        assert config.pool_config.default_pool_limit == 1
        assert config.pool_config.pool_granularity.value == "run"
        # The per-pool limit lives in storage: the CLI set gpu = 1 on the new instance.
        info = instance.event_log_storage.get_concurrency_info(GPU_POOL)
        assert (info.limit, info.using_default_limit) == (1, False)
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 1
        assert instance.run_retries_retry_on_asset_or_op_failure is False
        assert instance.run_monitoring_enabled
        # SQLite by default, under the home folder.
        assert "Sqlite" in type(instance.run_storage).__name__
        assert "Sqlite" in type(instance.event_log_storage).__name__
        assert list(home.glob("history/runs.db"))
        # Idempotent, and a limit changed by hand is put back.
        instance.event_log_storage.set_concurrency_slots(GPU_POOL, 3)
        assert apply_pool_limits(instance) == {GPU_POOL: 1}
        assert apply_pool_limits(instance) == {GPU_POOL: 1}


def test_documented_postgres_block_is_valid_instance_config(tmp_path, monkeypatch):
    """The commented PostgreSQL block, uncommented, passes Dagster's instance schema."""
    from dagster._core.instance.config import dagster_instance_config

    lines = PROJECT_YAML.read_text().splitlines()
    start = lines.index("# storage:")
    block = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        block.append(line[2:] if line.startswith("# ") else line[1:])
    (tmp_path / "dagster.yaml").write_text("\n".join(block) + "\n")
    for var in ("DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_HOST", "DAGSTER_PG_DB"):
        monkeypatch.setenv(var, "x")
    config, _ = dagster_instance_config(str(tmp_path))
    assert set(config["storage"]["postgres"]["postgres_db"]) == {"username", "password", "hostname", "db_name", "port"}


def test_downloads_retry_with_exponential_backoff():
    assert DOWNLOAD_RETRY.max_retries == 3 and DOWNLOAD_RETRY.delay == 15
    assert DOWNLOAD_RETRY.backoff == dg.Backoff.EXPONENTIAL and DOWNLOAD_RETRY.jitter == dg.Jitter.PLUS_MINUS
    for asset in raw_assets:
        node = asset.node_def
        assert node.retry_policy == DOWNLOAD_RETRY, asset.key
