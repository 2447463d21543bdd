"""Shared fixtures: the embedded sample fetched once per session, and the tiny model."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from assets.hub import HubSettings, fetch_source
from assets.media import MediaResolver
from assets.normalize import normalize_source
from assets.registry import SOURCES


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("giraffe-data")


@pytest.fixture(scope="session")
def fetched(data_root):
    """Every source fetched from its embedded sample through the real loader."""
    return {
        spec.name: fetch_source(spec, HubSettings(), data_root / "raw" / spec.name, data_root / "embedded")
        for spec in SOURCES
    }


@pytest.fixture(scope="session")
def normalized(fetched, data_root):
    """Every source normalised to ChatML: name -> NormalizeResult."""
    out = {}
    for spec in SOURCES:
        f = fetched[spec.name]
        rows = pq.read_table(f.data_path).to_pylist()
        media = MediaResolver(list(f.media_roots), data_root / "chatml" / spec.name / "media")
        out[spec.name] = normalize_source(spec, rows, media)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from assets.embedded.text import corpus
    from training.tiny_model import build_tiny_qwen2_vl

    return build_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny-model"), corpus(n_documents=200))


@pytest.fixture(scope="session")
def processor(tiny_model_dir):
    from training.processor import load_processor

    return load_processor(tiny_model_dir)


# --- ops fixtures ---
@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """`giraffe demo` once per session into a fresh instance: (exit code, instance, data root).

    Shared by test_pipeline.py (what the demo materialised) and test_ui.py (the same instance
    served by the real webserver). The environment the CLI sets (DAGSTER_HOME,
    GIRAFFE_DATA_ROOT) is restored right after, so other tests never see it."""
    import os

    import dagster as dg

    from pipelines.cli import main

    home = tmp_path_factory.mktemp("dagster-home")
    data = tmp_path_factory.mktemp("demo-data")
    old = dict(os.environ)
    try:
        code = main(["demo", "--data-root", str(data), "--dagster-home", str(home)])
        instance = dg.DagsterInstance.get()
    finally:
        os.environ.clear()
        os.environ.update(old)
    return code, instance, data
