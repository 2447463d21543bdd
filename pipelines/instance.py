"""The project's Dagster instance folder: where it is, and how a new one is prepared."""

from __future__ import annotations

import os
from pathlib import Path


def default_home() -> Path:
    return Path(os.environ.get("DAGSTER_HOME", Path.cwd() / "dagster_home")).resolve()


def prepare_home(home: Path) -> None:
    """Use ``home`` as DAGSTER_HOME; a new one gets the project's dagster.yaml. The pool limits
    (gpu = 1) and the UI's automation badge live in the instance's storage, so they are set
    here on every start."""
    home.mkdir(parents=True, exist_ok=True)
    project_yaml = Path(__file__).resolve().parent.parent / "dagster_home" / "dagster.yaml"
    if not (home / "dagster.yaml").exists() and project_yaml.is_file():
        (home / "dagster.yaml").write_text(project_yaml.read_text())
    os.environ["DAGSTER_HOME"] = str(home)
    # Lazy: dagster takes about a second to import, and `giraffe --help` must stay instant.
    import dagster as dg

    from assets.defs.pools import apply_pool_limits
    from pipelines.automation import sync_automation_badge

    with dg.DagsterInstance.from_config(str(home)) as instance:
        apply_pool_limits(instance)
        sync_automation_badge(instance)
