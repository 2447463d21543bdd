"""Resolving the media a source row refers to: files on disk, or bytes carried in the row.

Both the hub path and the embedded default end here with a local directory (a snapshot of the
source's media repository, or the generated sample), so adapters never know which one ran.

Two rules keep a bad reference from reaching training:

* a path must resolve inside one of the source's media roots (``media_outside_root``
  otherwise: an absolute path elsewhere, ``../`` climbing out, a symlink pointing out). A
  leading ``/`` means the dataset's root, as MMDU writes ``/mmdu-45k_pics/<file>.jpg``;
* an image must decode completely (every pixel, not only the header) before its sample is
  accepted (``unreadable_image`` otherwise). The verdict is cached by the file's content hash,
  so a re-run hashes each image but decodes it only once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from assets.contract.atomic import write_bytes, write_json

# Qwen2-VL's image processor refuses an aspect ratio above 200 (smart_resize raises).
MAX_ASPECT_RATIO = 200
VERDICT_VERSION = 1


class RejectRow(Exception):
    """Raised by adapters for a row that cannot become a conversation; carries the reason."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def content_hash(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def decode_image(path: str | Path) -> dict:
    """Decode every pixel of an image; the verdict ``{"ok", "width", "height"}`` or
    ``{"ok": False, "detail"}``. Never raises for a bad file."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            width, height = img.size
    except Exception as exc:  # PIL raises many types for a broken file; all mean "unreadable"
        return {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
    if width < 1 or height < 1:
        return {"ok": False, "detail": f"image is {width}x{height}"}
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        return {"ok": False, "detail": f"aspect ratio of {width}x{height} is over {MAX_ASPECT_RATIO}"}
    return {"ok": True, "width": width, "height": height}


@dataclass
class ImageVerifier:
    """Full decode of each image once per content: verdicts in memory for this run and, when
    ``cache_dir`` is set, on disk (``<hash[:2]>/<hash>.json``) for the next runs."""

    cache_dir: Path | None = None
    decoded: int = field(default=0, init=False)
    _by_path: dict[str, dict] = field(default_factory=dict, init=False, repr=False)

    def verdict(self, path: str) -> dict:
        if path in self._by_path:
            return self._by_path[path]
        digest = content_hash(path)
        cached = self.cache_dir / digest[:2] / f"{digest}.json" if self.cache_dir else None
        verdict = None
        if cached is not None and cached.is_file():
            try:
                verdict = json.loads(cached.read_text())
            except (OSError, ValueError):
                verdict = None
            if not isinstance(verdict, dict) or verdict.get("version") != VERDICT_VERSION:
                verdict = None
        if verdict is None:
            verdict = {**decode_image(path), "version": VERDICT_VERSION}
            self.decoded += 1
            if cached is not None:
                write_json(cached, verdict)
        self._by_path[path] = verdict
        return verdict

    def check(self, path: str) -> str:
        verdict = self.verdict(path)
        if not verdict["ok"]:
            raise RejectRow("unreadable_image", f"{Path(path).name}: {verdict['detail']}")
        return path


@dataclass
class MediaResolver:
    """Finds referenced files under the source's media roots and stores inline media."""

    roots: list[Path]
    inline_dir: Path
    verifier: ImageVerifier = field(default_factory=ImageVerifier)
    written: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._real_roots = [Path(r).resolve() for r in self.roots]

    def _inside(self, path: Path) -> bool:
        return any(path.is_relative_to(r) for r in self._real_roots)

    def locate(self, relpath: str | None) -> str:
        """The resolved path of a media reference inside the media roots, or ``RejectRow``."""
        if not isinstance(relpath, str) or not relpath.strip():
            raise RejectRow("malformed_row", f"media reference is {relpath!r}, expected a path")
        rel = relpath.strip()
        if "\x00" in rel:
            raise RejectRow("malformed_row", f"media reference {rel!r} holds a NUL byte")
        dataset_rel = rel.lstrip("/\\")
        candidates = [Path(r) / dataset_rel for r in self.roots]
        if Path(rel).is_absolute():
            candidates.insert(0, Path(rel))
        escaped = None
        for candidate in candidates:
            try:
                if not candidate.is_file():
                    continue
                real = candidate.resolve()
            except OSError:
                continue
            if self._inside(real):
                return str(real)
            escaped = escaped or real
        if escaped is not None:
            raise RejectRow("media_outside_root", f"{rel} resolves to {escaped}, outside the source's media root(s)")
        for root in self._real_roots:
            lexical = Path(os.path.normpath(root / dataset_rel))
            if not lexical.is_relative_to(root):
                raise RejectRow("media_outside_root", f"{rel} climbs out of the media root {root}")
        raise RejectRow("missing_media", f"file not found: {rel}")

    def file(self, relpath: str | None) -> str:
        """A media file of any kind, located (decoded later by its own stage, as videos are)."""
        return self.locate(relpath)

    def image(self, relpath: str | None) -> str:
        """An image file, located and fully decoded."""
        return self.verifier.check(self.locate(relpath))

    def video(self, relpath: str | None) -> str:
        """A video file, located; the video stage decodes it and rejects what it cannot read."""
        return self.locate(relpath)

    def inline_bytes(self, data: bytes | None, suffix: str = ".png") -> str:
        """Write an inline image once, named by content hash, fully decode it, return its path."""
        if not data:
            raise RejectRow("missing_media", "inline media is empty")
        digest = hashlib.sha256(data).hexdigest()[:24]
        path = self.inline_dir / f"{digest}{suffix}"
        if not path.exists():
            write_bytes(path, data)
            self.written += 1
        return self.verifier.check(str(path.resolve()))

    def inline_base64(self, text: str | None, suffix: str = ".png") -> str:
        if not isinstance(text, str) or not text:
            raise RejectRow("missing_media", "base64 image is empty")
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RejectRow("malformed_row", f"image is not valid base64 ({exc})") from None
        return self.inline_bytes(data, suffix)
