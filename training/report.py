"""How the training job talks to the outside: stdout always, Dagster Pipes when launched by it.

Only rank 0 reports (every rank of a torchrun/deepspeed launch inherits the Pipes environment
variables, so the others must stay silent or Dagster would see N copies of every message).
The job knows Dagster only through ``dagster_pipes``; without the Pipes environment it prints.
"""

from __future__ import annotations

import sys
from typing import Any

from assets.contract.markdown import figure_png, pyplot


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


def loss_curve_png(losses: list[tuple[int, float]], title: str = "training loss") -> bytes:
    """The loss curve as PNG bytes (matplotlib Agg: no display needed)."""
    fig, ax = pyplot().subplots(figsize=(5, 3), dpi=80)
    if losses:
        steps, values = zip(*losses)
        ax.plot(steps, values, marker="o", markersize=3, color="#4a78c2")
    ax.set_title(title)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    return figure_png(fig)
