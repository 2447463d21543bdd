"""Folders the pipeline owns, and the rule that it touches no other.

A generated folder (an embedded sample) carries a stamp file that lists every file the
pipeline wrote into it, and each archive unpacked there leaves a marker listing its members.
The pipeline replaces a folder only when it carries its stamp and holds nothing else; a folder
without the stamp, a stamped one holding files the pipeline did not write, or a location that
resolves outside the data root is refused with an error that says what is in the way and
changes nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

PARTIAL_PREFIX = ".giraffe-partial-"
UNPACKED_SUFFIX = ".unpacked"


class NotOwnedError(RuntimeError):
    """The pipeline would have to write, move or delete something that is not its own."""


def owned_subdir(root: Path, name: str) -> Path:
    """``root / name`` for a repo-id-like ``name`` (``org/name``), refusing one that is absolute,
    climbs out with ``..`` or resolves outside ``root`` (a symlink): in embedded mode a
    ``hub_id`` names a folder the pipeline generates, never a folder of the user's."""
    rel = PurePosixPath(str(name).replace("\\", "/"))
    if not str(name).strip() or rel.is_absolute() or ".." in rel.parts or Path(str(name)).is_absolute():
        raise NotOwnedError(
            f"{name!r} is not a hub repo id (org/name): in embedded mode it would name the folder "
            f"the pipeline generates its sample into, so it must stay under {root}. Use hub mode "
            "for a hub repo, or declare a local folder with GIRAFFE_DATASETS (read-only input)."
        )
    target = root / rel
    resolved_root = root.resolve()
    if not target.resolve().is_relative_to(resolved_root):
        raise NotOwnedError(f"{target} resolves to {target.resolve()}, outside {resolved_root}: refusing to write there")
    return target


def _stamp_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def _known_files(folder: Path, stamp: dict) -> set[str] | None:
    """Files the pipeline wrote into ``folder`` (None: a stamp from before files were listed)."""
    if "files" not in stamp:
        return None
    known = set(stamp["files"])
    for marker in folder.rglob(f".*{UNPACKED_SUFFIX}"):
        base = marker.parent.relative_to(folder)
        known.add(marker.relative_to(folder).as_posix())
        try:
            members = json.loads(marker.read_text() or "[]")
        except (OSError, ValueError):
            members = []
        known.update((base / m).as_posix() for m in members)
    return known


def _read_stamp(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def check_replaceable(target: Path, stamp_name: str) -> None:
    """Raise ``NotOwnedError`` unless ``target`` is absent, empty, or a stamped folder that holds
    only what the pipeline wrote."""
    if not target.exists() and not target.is_symlink():
        return
    if target.is_symlink() or not target.is_dir():
        raise NotOwnedError(f"{target} is in the way and is not a folder the pipeline generated; nothing was changed")
    if not any(target.iterdir()):
        return
    stamp = _read_stamp(target / stamp_name)
    if stamp is None:
        raise NotOwnedError(
            f"{target} is in the way: it holds files the pipeline did not generate (no {stamp_name}). "
            "Move it away or use another data root; nothing was changed."
        )
    known = _known_files(target, stamp)
    if known is None:
        return
    foreign = [f for f in _stamp_files(target) if f not in known and f != stamp_name]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise NotOwnedError(
            f"{target} must be regenerated (its stamp differs) but holds files the pipeline did not write: "
            f"{shown}. Move them away and run again; nothing was changed."
        )


def generate_once(target: Path, stamp: dict, generate: Callable[[Path], None], stamp_name: str) -> Path:
    """Run ``generate(folder)`` unless ``target`` already holds output stamped with ``stamp``.

    Generation goes to a fresh hidden sibling renamed into place, so an interrupted run never
    leaves a half-written folder that looks finished; the stamp, written last, lists every file
    generated. An existing folder is replaced only under ``check_replaceable``'s rule."""
    current = _read_stamp(target / stamp_name)
    if current is not None and {k: v for k, v in current.items() if k != "files"} == stamp:
        return target
    check_replaceable(target, stamp_name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=PARTIAL_PREFIX + target.name + "-", dir=target.parent))
    try:
        generate(tmp)
        full = {**stamp, "files": _stamp_files(tmp)}
        (tmp / stamp_name).write_text(json.dumps(full))
        try:
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        except OSError as exc:
            raise NotOwnedError(f"cannot replace {target}: {exc}") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
