"""Progress of a meta-training run: a live bar on a terminal; in a log (not a terminal), one line
per validation and at least one a minute, so a run under nohup or in CI shows it is alive."""

from __future__ import annotations

import math
import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

LOG_INTERVAL_S = 60.0
"""Longest gap between two progress lines in a log."""


class MetaTrainingDisplay:
    """Shows meta-iteration, meta-loss, validation loss and ETA; a context manager."""

    def __init__(self, total_iterations: int, log_interval_s: float = LOG_INTERVAL_S) -> None:
        self.total = total_iterations
        self.log_interval_s = log_interval_s
        self.last_logged = time.monotonic()
        self.console = Console(stderr=True)
        self.live = sys.stderr.isatty()
        self.progress = Progress(
            TextColumn("meta-training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not self.live,
        )
        self.task_id = self.progress.add_task("meta", total=total_iterations, status="")
        self.last_validation = math.nan

    def __enter__(self) -> MetaTrainingDisplay:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def update(self, record: dict[str, Any]) -> None:
        """Called once per meta-iteration with its metrics."""
        if "validation_loss" in record:
            self.last_validation = record["validation_loss"]
        status = (
            f"meta-loss {record['meta_loss']:.4g}  validation {_shown(self.last_validation)}  "
            f"best {record['best_validation_loss']:.4g}"
        )
        self.progress.update(self.task_id, completed=record["iteration"], status=status)
        if not self.live and self._log_due(record):
            self.last_logged = time.monotonic()
            self.console.print(
                f"iteration {record['iteration']}/{self.total}  {status}  ETA {record['eta_s']:.0f}s",
                highlight=False,
            )

    def _log_due(self, record: dict[str, Any]) -> bool:
        """Whether a log line is due: at each validation, and once `log_interval_s` has passed."""
        waited = time.monotonic() - self.last_logged
        return "validation_loss" in record or waited >= self.log_interval_s


def _shown(loss: float) -> str:
    """A loss for the status line; "-" before the first validation."""
    return "-" if math.isnan(loss) else f"{loss:.4g}"
