"""How the training job talks to the outside: stdout always, Dagster Pipes when launched by it.

Only rank 0 reports (every rank of a torchrun/deepspeed launch inherits the Pipes environment
variables, so the others must stay silent or Dagster would see N copies of every message).
The job knows Dagster only through ``dagster_pipes``; without the Pipes environment it prints.
"""

from __future__ import annotations

import sys
from typing import Any

from assets.contract.markdown import PLOT_PAIR, figure_png, markdown_table, pyplot


def pipes_active() -> bool:
    """True when this process was launched by a Dagster Pipes client."""
    try:
        from dagster_pipes import PipesEnvVarParamsLoader
    except ImportError:  # pragma: no cover - dagster-pipes is a dependency
        return False
    return PipesEnvVarParamsLoader().is_dagster_pipes_process()


class Reporter:
    """Log lines and the final materialisation; a no-op on ranks other than 0."""

    def __init__(self, rank: int = 0) -> None:
        self.rank = rank
        self._pipes = None
        if rank == 0 and pipes_active():
            from dagster_pipes import open_dagster_pipes

            self._pipes = open_dagster_pipes()

    @property
    def under_pipes(self) -> bool:
        return self._pipes is not None

    def log(self, message: str, level: str = "info") -> None:
        """One line: into Dagster's event log under Pipes, else to stdout (not both: the Pipes
        client also forwards stdout, which would show every line twice)."""
        if self.rank != 0:
            return
        if self._pipes is not None:
            getattr(self._pipes.log, level)(message)
        else:
            print(message, file=sys.stdout if level == "info" else sys.stderr, flush=True)

    def materialize(self, metadata: dict[str, Any]) -> None:
        if self.rank == 0 and self._pipes is not None:
            self._pipes.report_asset_materialization(metadata=metadata)

    def close(self, error: BaseException | None = None) -> None:
        if self._pipes is not None:
            if error is not None:
                self._pipes.__exit__(type(error), error, error.__traceback__)
            else:
                self._pipes.close()
            self._pipes = None


# -- metadata values in the Pipes wire format ------------------------------------------------


def md(text: str) -> dict[str, Any]:
    return {"raw_value": text, "type": "md"}


def path_value(path: str) -> dict[str, Any]:
    return {"raw_value": str(path), "type": "path"}


def json_value(value: Any) -> dict[str, Any]:
    return {"raw_value": value, "type": "json"}


def training_curves_png(
    losses: list[tuple[int, float]], lrs: list[tuple[int, float]], title: str, resumed_at: int = 0
) -> bytes:
    """Loss and learning rate against the optimiser step (integer ticks), side by side; a
    resumed run's restart is marked on both."""
    from matplotlib.ticker import MaxNLocator

    fig, (ax_loss, ax_lr) = pyplot().subplots(1, 2, figsize=PLOT_PAIR)
    for ax, points, label, colour in ((ax_loss, losses, "loss", "#4a78c2"), (ax_lr, lrs, "learning rate", "#c2784a")):
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, marker="o" if len(points) <= 50 else None, markersize=4, color=colour)
        if resumed_at:
            ax.axvline(resumed_at, color="grey", linestyle="--", linewidth=1, label=f"resumed at step {resumed_at}")
            ax.legend()
        ax.set_xlabel("optimiser step")
        ax.set_ylabel(label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax_loss.set_title(f"{title} loss")
    ax_lr.set_title(f"{title} learning-rate schedule")
    return figure_png(fig)


def loss_table(losses: list[tuple[int, float]], lrs: list[tuple[int, float]], rows: int = 12) -> str:
    """At most ``rows`` steps (the first, the last and evenly between) as a markdown table with
    loss and learning rate, rounded; every step is in the checkpoint's training_report.json."""
    if not losses:
        return "_(no steps)_"
    lr_at = dict(lrs)
    n = len(losses)
    picks = sorted({round(i * (n - 1) / max(1, rows - 1)) for i in range(min(rows, n))})
    table = markdown_table(
        [
            {"step": losses[i][0], "loss": f"{losses[i][1]:.4f}",
             "learning rate": f"{lr_at[losses[i][0]]:.2e}" if losses[i][0] in lr_at else "-"}
            for i in picks
        ]
    )
    note = f"\n\n{len(picks)} of {n} steps; all in training_report.json" if len(picks) < n else ""
    return table + note


SPARK = "▁▂▃▄▅▆▇█"


def loss_sparkline(losses: list[tuple[int, float]], width: int = 40) -> str:
    """``8.2256 ▇█▆▅▃▁ 8.0869``: the loss trend in one line (averaged into ``width`` buckets)."""
    if not losses:
        return ""
    values = [v for _, v in losses]
    buckets = [values[i * len(values) // width:(i + 1) * len(values) // width] for i in range(width)]
    means = [sum(b) / len(b) for b in buckets if b] or values
    lo, hi = min(means), max(means)
    marks = "".join(SPARK[int((m - lo) / (hi - lo) * (len(SPARK) - 1)) if hi > lo else 0] for m in means)
    return f"{values[0]:.4f} {marks} {values[-1]:.4f}"
