"""Helpers for comparing optimizers in a user's own training loop (the examples): a learning-rate
search whose grid grows past its edges, and loss plotted against steps and against wall time."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np


def tune_on_growing_grid(
    score: Callable[[float], float], rates: Iterable[float], max_growth: int
) -> tuple[float, dict[float, float]]:
    """The rate with the lowest `score` (e.g. mean final loss on tuning seeds; inf if diverged).

    Starts from `rates`; while the best rate sits on an edge of the grid, scores the next rate
    beyond that edge (a factor of sqrt(10)), at most `max_growth` times.

    Returns:
      The best rate and every rate's score, sorted by rate.
    """
    grid = {rate: score(rate) for rate in rates}
    for _ in range(max_growth):
        ordered, best = sorted(grid), min(grid, key=grid.get)
        if best == ordered[0]:
            beyond = ordered[0] / math.sqrt(10)
        elif best == ordered[-1]:
            beyond = ordered[-1] * math.sqrt(10)
        else:
            break
        grid[beyond] = score(beyond)
    return min(grid, key=grid.get), dict(sorted(grid.items()))


def plot_loss_by_step_and_time(
    results: Mapping[str, Mapping[str, list[float]]], title: str, path: Path, log_loss: bool
) -> None:
    """Two panels: each optimizer's `mean_curve` against the step and against `mean_times` (s)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_step, by_time) = plt.subplots(1, 2, figsize=(10, 4))
    for label, result in results.items():
        by_step.plot(result["mean_curve"], label=label)
        by_time.plot(result["mean_times"], result["mean_curve"], label=label)
    scale = "log" if log_loss else "linear"
    by_step.set(xlabel="step", ylabel="minibatch loss", yscale=scale)
    by_time.set(xlabel="wall time (s)", ylabel="minibatch loss", yscale=scale)
    by_step.legend()
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def mean_or_inf(values: list[float]) -> float:
    """The mean of `values`, or inf if any is not finite (a diverged run)."""
    return float(np.mean(values)) if all(map(math.isfinite, values)) else math.inf
