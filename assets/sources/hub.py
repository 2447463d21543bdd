"""Fetching a source: rows through ``datasets.load_dataset``, media through ``huggingface_hub``.

The hub and the embedded default share every line here except the location: a hub repo id,
or the local folder where the embedded sample lies in the same layout. Archives are unpacked
by the same code in both cases, so the path a user runs against the hub is the path tested.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from assets.sources.embedded.samples import SAMPLE_VERSION

if TYPE_CHECKING:
    import datasets

    from assets.sources.registry import SourceSpec

Mode = Literal["embedded", "hub"]
SAMPLE_STAMP = ".giraffe-sample.json"


@dataclass(frozen=True)
class HubSettings:
    """How sources are fetched. ``max_rows`` streams only the first rows of a huge source."""

    mode: Mode = "embedded"
    token: str | None = None
    max_rows: int | None = None
    revision: str | None = None
    seed: int = 0


@dataclass(frozen=True)
class FetchedSource:
    name: str
    mode: Mode
    location: str
    rows: int
    data_path: Path
    media_roots: tuple[Path, ...]
    content_hash: str
    columns: tuple[str, ...]

    def manifest(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mode": self.mode,
            "location": self.location,
            "rows": self.rows,
            "data_path": str(self.data_path),
            "media_roots": [str(p) for p in self.media_roots],
            "content_hash": self.content_hash,
            "columns": list(self.columns),
        }


def ensure_embedded_sample(spec: SourceSpec, embedded_root: Path, seed: int = 0) -> Path:
    """Generate the source's local sample once (atomically) and return its folder."""
    stamp = {"source": spec.name, "version": SAMPLE_VERSION, "seed": seed}
    return generate_once(embedded_root / spec.hub_id, stamp, lambda folder: spec.sample(folder, seed))


def generate_once(target: Path, stamp: dict, generate, stamp_name: str = SAMPLE_STAMP) -> Path:
    """Run ``generate(folder)`` unless ``target`` already holds output stamped with ``stamp``.
    Generation goes to a ``.partial`` sibling renamed into place, so an interrupted run never
    leaves a half-written sample that looks finished."""
    stamp_path = target / stamp_name
    if stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp:
        return target
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    generate(tmp)
    (tmp / stamp_name).write_text(json.dumps(stamp))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def load_rows(spec: SourceSpec, location: str, settings: HubSettings, cache_dir: Path | None = None) -> datasets.Dataset:
    """Load the source's rows with ``datasets`` from a hub repo id or a local folder."""
    import datasets

    kwargs: dict[str, Any] = {
        "data_files": list(spec.data_files),
        "split": spec.split,
        "token": settings.token,
        "revision": settings.revision,
    }
    if settings.max_rows:
        stream = datasets.load_dataset(location, streaming=True, **kwargs)
        rows = list(stream.take(settings.max_rows))
        return datasets.Dataset.from_list(rows, features=stream.features)
    return datasets.load_dataset(location, cache_dir=str(cache_dir) if cache_dir else None, **kwargs)


def unpack_archives(base: Path, patterns: tuple[str, ...]) -> list[Path]:
    """Unpack every archive matching ``patterns`` in place, once; refuses members that would
    land outside ``base`` (zip-slip)."""
    unpacked = []
    for pattern in patterns:
        for archive in sorted(base.glob(pattern)):
            marker = archive.with_name(f".{archive.name}.unpacked")
            if marker.exists():
                continue
            dest = archive.parent.resolve()
            if archive.suffix == ".zip":
                with zipfile.ZipFile(archive) as zf:
                    for member in zf.namelist():
                        if not (dest / member).resolve().is_relative_to(dest):
                            raise ValueError(f"{archive.name}: member {member!r} escapes the folder")
                    zf.extractall(dest)
            else:
                with tarfile.open(archive) as tf:
                    tf.extractall(dest, filter="data")
            marker.touch()
            unpacked.append(archive)
    return unpacked


def download_media(repo_id: str, patterns, media_dir: Path, settings: HubSettings) -> None:
    """Snapshot the files matching ``patterns`` of a hub dataset repo into ``media_dir`` (sources
    and benchmarks alike; nothing to do without patterns)."""
    if not patterns:
        return
    from huggingface_hub import snapshot_download

    snapshot_download(
        repo_id=repo_id,
        repo_type="dataset",
        allow_patterns=list(patterns),
        local_dir=str(media_dir),
        token=settings.token,
        revision=settings.revision,
    )


def fetch_media(spec: SourceSpec, location: str, settings: HubSettings, media_dir: Path) -> tuple[Path, ...]:
    """Download (hub) or locate (embedded) the source's media; return the roots paths resolve in."""
    media = spec.media
    if media.kind in ("none", "inline"):
        return ()
    if settings.mode == "hub":
        base = media_dir
        download_media(media.repo_id or spec.hub_id, media.patterns, media_dir, settings)
    else:
        base = Path(location)
    unpack_archives(base, media.archives)
    return tuple(base / root for root in media.roots)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_source(spec: SourceSpec, settings: HubSettings, out_dir: Path, embedded_root: Path) -> FetchedSource:
    """Fetch one source into ``out_dir``: ``data.parquet`` in the published schema, media next
    to it (hub) or referenced in place (embedded), and ``manifest.json`` for the next stage."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if settings.mode == "hub":
        location = spec.hub_id
    else:
        location = str(ensure_embedded_sample(spec, embedded_root, settings.seed))
    ds = load_rows(spec, location, settings, cache_dir=out_dir.parent.parent / ".hf-cache")
    data_path = out_dir / "data.parquet"
    tmp = data_path.with_suffix(".parquet.partial")
    ds.to_parquet(str(tmp))
    tmp.replace(data_path)
    roots = fetch_media(spec, location, settings, out_dir / "media")
    fetched = FetchedSource(
        name=spec.name,
        mode=settings.mode,
        location=location,
        rows=len(ds),
        data_path=data_path,
        media_roots=roots,
        content_hash=file_sha256(data_path),
        columns=tuple(ds.column_names),
    )
    (out_dir / "manifest.json").write_text(json.dumps(fetched.manifest(), indent=1))
    return fetched


def read_manifest(raw_dir: Path) -> dict[str, Any]:
    path = raw_dir / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: materialise the raw asset first")
    return json.loads(path.read_text())
