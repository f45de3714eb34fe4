"""Progress of a meta-training run: a live bar on a terminal, one line per validation otherwise."""

from __future__ import annotations

import math
import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class MetaTrainingDisplay:
    """Shows meta-iteration, meta-loss, validation loss and ETA; a context manager."""

    def __init__(self, total_iterations: int) -> None:
        self.total = total_iterations
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
            f"meta-loss {record['meta_loss']:.4g}  validation {self.last_validation:.4g}  "
            f"best {record['best_validation_loss']:.4g}"
        )
        self.progress.update(self.task_id, completed=record["iteration"], status=status)
        if not self.live and "validation_loss" in record:
            self.console.print(
                f"iteration {record['iteration']}/{self.total}  {status}  ETA {record['eta_s']:.0f}s",
                highlight=False,
            )
