"""Dagster resources: where data lives and how sources are fetched."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import dagster as dg

from assets.contract.layout import DataLayout
from assets.contract.quality import DEFAULT_MAX_REASON_SHARE, DEFAULT_MIN_RECORDS
from assets.defs.pipes import subprocess_client
from assets.sources.hub import HubSettings, parse_hub_ids


class DataStore(dg.ConfigurableResource):
    """Root folder of every table and media file the pipeline writes (local path)."""

    root: str = "data"

    @property
    def path(self) -> Path:
        return Path(self.root).expanduser().resolve()

    def stage_dir(self, stage: str, name: str | None = None) -> Path:
        path = self.path / stage if name is None else self.path / stage / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def layout(self) -> DataLayout:
        return DataLayout(self.path)

    @property
    def embedded_root(self) -> Path:
        return self.layout.embedded


class SourceHub(dg.ConfigurableResource):
    """How raw sources are fetched: ``embedded`` (the generated local sample, default) or
    ``hub`` (the Hugging Face Hub through ``datasets``; set ``HF_TOKEN`` for gated sets)."""

    mode: Literal["embedded", "hub"] = "embedded"
    token: str | None = None
    max_rows: int | None = None
    revision: str | None = None
    seed: int = 0
    hub_ids: dict[str, str] = {}
    """Source or benchmark name -> hub repo id, replacing the registry's in hub mode (a mirror, a
    transferred repo); from ``GIRAFFE_HUB_IDS=name=org/repo,...`` by default."""

    def settings(self) -> HubSettings:
        return HubSettings(
            mode=self.mode, token=self.token, max_rows=self.max_rows, revision=self.revision, seed=self.seed,
            hub_ids=tuple(sorted(self.hub_ids.items())),
        )


class QualityPolicy(dg.ConfigurableResource):
    """What the stages that quarantine tolerate before they fail.

    ``max_reason_share``: the ``no_mass_rejection`` checks fail when one reason takes more than
    this share of a source. ``exclude_sources``: sources that the downstream stages (video
    frames, token counts) leave out on purpose; any other source whose ChatML is missing or
    failed its guards stops them with an error, so a gap is never silent. ``min_records``: a
    shard's share is taken of at least this many records (``assets/contract/quality.py``)."""

    max_reason_share: float = DEFAULT_MAX_REASON_SHARE
    min_records: int = DEFAULT_MIN_RECORDS
    exclude_sources: list[str] = []


class DataPlaneConfig(dg.Config):
    """How a data stage spreads its work (run config of raw, chatml and token_counts).

    ``workers``: processes the stage's record batches are spread over; 0 means every core this
    process may use (``os.sched_getaffinity``), the default. ``batch_size``: raw rows per batch;
    with ``workers`` it sets the stage's peak memory (a few batches per worker in flight),
    whatever the size of the source."""

    workers: int = 0
    batch_size: int = 512


def default_resources() -> dict[str, dg.ConfigurableResource]:
    """Resources from the environment: ``GIRAFFE_DATA_ROOT``, ``GIRAFFE_SOURCES_MODE``,
    ``GIRAFFE_MAX_ROWS``, ``HF_TOKEN`` (read through ``EnvVar`` so it never shows in the UI),
    ``GIRAFFE_MAX_REASON_SHARE``, ``GIRAFFE_MIN_RECORDS``, ``GIRAFFE_EXCLUDE_SOURCES`` (comma-separated) and
    ``GIRAFFE_HUB_IDS`` (``name=org/repo,...``). ``HF_TOKEN`` is needed for gated sets:
    LongVideoBench and ShareGPT-4o (accept their terms on the hub first).
    ``pipes_subprocess_client`` launches the training job (``assets/defs/checkpoint.py``)."""
    max_rows = os.environ.get("GIRAFFE_MAX_ROWS")
    share = os.environ.get("GIRAFFE_MAX_REASON_SHARE")
    floor = os.environ.get("GIRAFFE_MIN_RECORDS")
    excluded = [s.strip() for s in os.environ.get("GIRAFFE_EXCLUDE_SOURCES", "").split(",") if s.strip()]
    return {
        "store": DataStore(root=os.environ.get("GIRAFFE_DATA_ROOT", str(Path.cwd() / "data"))),
        "hub": SourceHub(
            mode=os.environ.get("GIRAFFE_SOURCES_MODE", "embedded"),  # type: ignore[arg-type]
            token=dg.EnvVar("HF_TOKEN") if os.environ.get("HF_TOKEN") else None,
            max_rows=int(max_rows) if max_rows else None,
            hub_ids=dict(parse_hub_ids(os.environ.get("GIRAFFE_HUB_IDS"))),
        ),
        "quality": QualityPolicy(
            max_reason_share=float(share) if share else DEFAULT_MAX_REASON_SHARE, exclude_sources=excluded,
            min_records=int(floor) if floor else DEFAULT_MIN_RECORDS,
        ),
        "pipes_subprocess_client": subprocess_client(),
    }
