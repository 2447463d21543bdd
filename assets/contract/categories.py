"""The four ETVLM data categories (paper Table 7), in the order tables and plots show them.

A module of its own, with nothing heavy imported, so the CLI can offer them as choices
without loading pyarrow; everything that names a category (sources, the mixture's shares and
its config, the CLI) takes them from here.
"""

from __future__ import annotations

CATEGORIES: tuple[str, ...] = ("long_text", "short_image", "interleave", "video")
