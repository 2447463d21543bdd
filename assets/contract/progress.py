"""One progress line per long loop: counts, rate and ETA, at a cadence a log can bear.

Plain Python with a sink (any ``str -> None``: ``print``, ``context.log.info``, a Pipes log), so
the CLI and the Dagster event log get the same lines. Library progress bars redraw dozens of
times a second and fill a log with carriage returns; a real Video-MME evaluation logged every
batch would write hundreds of lines per benchmark. Here a line is written when the loop crosses
another ``every_fraction`` of its total (10 %) but at most once per ``min_seconds``, and at least
once per ``max_seconds`` however slow it goes. A loop that ends within ``min_seconds`` without
having written a line stays silent: the stage's own summary line already says what it did. A
stage whose summary line carries the time itself passes ``closing_line=False``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

Sink = Callable[[str], None]


def duration(seconds: float) -> str:
    """``0.4 s``, ``42 s``, ``3 min 05 s``, ``2 h 07 min``: short and unambiguous in a log line."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def rate(count: float, seconds: float, unit: str) -> str:
    if seconds <= 0:
        return f"- {unit}/s"
    per_s = count / seconds
    if per_s >= 100:
        return f"{per_s:,.0f} {unit}/s"
    if per_s >= 1 or per_s == 0:
        return f"{per_s:.1f} {unit}/s"
    return f"{seconds / count:.1f} s/{unit.rstrip('s') or unit}"


class Progress:
    """Counts work done out of ``total`` and writes a line to ``sink`` when one is due.

    ``update(n)`` after each unit of work (or batch); ``close()`` (or leaving the ``with``
    block) writes the closing line with the total time and rate. ``sink=None`` counts only.
    """

    def __init__(
        self,
        label: str,
        total: int,
        sink: Sink | None,
        unit: str = "items",
        every_fraction: float = 0.1,
        min_seconds: float = 10.0,
        max_seconds: float = 60.0,
        closing_line: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if total < 0:
            raise ValueError(f"total must be >= 0, got {total}")
        self.label, self.total, self.sink, self.unit = label, total, sink, unit
        self.every_fraction, self.min_seconds, self.max_seconds = every_fraction, min_seconds, max_seconds
        self.clock, self.closing_line = clock, closing_line
        self.done = 0
        self.lines = 0
        self.started = self._last = clock()
        self._next_fraction = every_fraction
        self._closed = False

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    def update(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        since = now - self._last
        fraction = self.done / self.total if self.total else 1.0
        crossed = fraction >= self._next_fraction
        if crossed:
            self._next_fraction = (math.floor(fraction / self.every_fraction + 1e-9) + 1) * self.every_fraction
        if self.done >= self.total > 0:
            return  # close() writes the last line, with the total time
        if (crossed and since >= self.min_seconds) or since >= self.max_seconds:
            self._emit(self.line(now), now)

    def line(self, now: float | None = None) -> str:
        """The progress line as of now: ``label: 120/300 items (40%), 3.1 items/s, ETA 58 s``."""
        now = self.clock() if now is None else now
        elapsed = now - self.started
        text = f"{self.label}: {self.done}/{self.total} {self.unit}"
        if self.total:
            text += f" ({100 * self.done / self.total:.0f}%)"
        text += f", {rate(self.done, elapsed, self.unit)}"
        if self.done and self.total > self.done:
            text += f", ETA {duration(elapsed / self.done * (self.total - self.done))}"
        return text

    def close(self) -> None:
        """The closing line (``label: 300 items in 1 min 40 s, 3.0 items/s``), unless the loop
        was short and wrote nothing (the stage's summary says enough then) or the caller's own
        summary carries the time (``closing_line=False``)."""
        if self._closed:
            return
        self._closed = True
        elapsed = self.elapsed
        if not self.closing_line or (self.lines == 0 and elapsed < self.min_seconds):
            return
        count = f"{self.done}/{self.total}" if self.done != self.total else str(self.total)
        self._emit(f"{self.label}: {count} {self.unit} in {duration(elapsed)}, {rate(self.done, elapsed, self.unit)}", self.clock())

    def _emit(self, text: str, now: float) -> None:
        self._last = now
        self.lines += 1
        if self.sink is not None:
            self.sink(text)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
