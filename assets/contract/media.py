"""Resolving the media a source row refers to: files on disk, or bytes carried in the row.

Both the hub path and the embedded default end here with a local directory (a snapshot of the
source's media repository, or the generated sample), so adapters never know which one ran.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from pathlib import Path


class RejectRow(Exception):
    """Raised by adapters for a row that cannot become a conversation; carries the reason."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class MediaResolver:
    """Finds referenced files under the source's media roots and stores inline media."""

    roots: list[Path]
    inline_dir: Path
    written: int = field(default=0, init=False)

    def file(self, relpath: str | None) -> str:
        if not isinstance(relpath, str) or not relpath.strip():
            raise RejectRow("malformed_row", f"media reference is {relpath!r}, expected a path")
        rel = relpath.strip()
        candidate = Path(rel)
        if candidate.is_absolute():
            if candidate.is_file():
                return str(candidate)
        else:
            for root in self.roots:
                path = root / rel
                if path.is_file():
                    return str(path.resolve())
        raise RejectRow("missing_media", f"file not found: {rel}")

    def inline_bytes(self, data: bytes | None, suffix: str = ".png") -> str:
        """Write inline media once, named by content hash, and return its path."""
        if not data:
            raise RejectRow("missing_media", "inline media is empty")
        digest = hashlib.sha256(data).hexdigest()[:24]
        path = self.inline_dir / f"{digest}{suffix}"
        if not path.exists():
            self.inline_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
            self.written += 1
        return str(path.resolve())

    def inline_base64(self, text: str | None, suffix: str = ".png") -> str:
        if not isinstance(text, str) or not text:
            raise RejectRow("missing_media", "base64 image is empty")
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RejectRow("malformed_row", f"image is not valid base64 ({exc})") from None
        return self.inline_bytes(data, suffix)
