"""Helpers for comparing optimizers in a user's own training loop (the examples): a learning-rate
search whose grid grows past its edges, runs over seeds summarized, and the results written as
JSON, a Markdown table and loss plotted against steps and against wall time."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

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


def summarize_seeds(runs: list[Mapping], steps_timed: int) -> dict:
    """One optimizer's runs over seeds (each with "losses", "times" and "final") as the examples
    report them: the mean loss and elapsed-time curves, each run's final loss and their mean, and
    the median milliseconds per step over the `steps_timed` steps that `times[-1]` covers."""
    finals = [float(run["final"]) for run in runs]
    return {
        "mean_curve": np.mean([run["losses"] for run in runs], axis=0).tolist(),
        "mean_times": np.mean([run["times"] for run in runs], axis=0).tolist(),
        "finals": finals,
        "final": float(np.mean(finals)),
        "ms_per_step": 1000 * float(np.median([run["times"][-1] for run in runs])) / steps_timed,
    }


def example_summary(
    config: Any, grid: Mapping[float, float], best_lr: float, results: dict
) -> dict:
    """What an example reports: its config (a dataclass), Adam's grid and whether the chosen rate
    is interior to it, and each optimizer's `summarize_seeds`."""
    return {
        "config": asdict(config),
        "adam_grid": {str(lr): loss for lr, loss in grid.items()},
        "adam_best_is_interior": min(grid) < best_lr < max(grid),
        "results": results,
    }


def write_example_results(
    workdir: Path, summary: Mapping, title: str, loss_header: str, log_loss: bool
) -> None:
    """An example's results.json, RESULTS.md (final loss and ms per step of each optimizer, and
    Adam's grid) and loss figure; `summary` holds "config", "results", "adam_grid" and
    "adam_best_is_interior"."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "results.json").write_text(json.dumps(summary, indent=1))
    rows = [
        f"| {label} | {result['final']:.4g} | {result['ms_per_step']:.2f} |"
        for label, result in summary["results"].items()
    ]
    grid = ", ".join(f"{lr}: {loss:.4g}" for lr, loss in summary["adam_grid"].items())
    (workdir / "RESULTS.md").write_text(
        f"# {title}\n\n| optimizer | {loss_header} | ms per step |\n|---|---|---|\n"
        + "\n".join(rows)
        + f"\n\nAdam's grid ({loss_header} on tuning seeds {summary['config']['tuning_seeds']}): "
        + f"{grid}; best rate interior: {summary['adam_best_is_interior']}\n"
    )
    plot_loss_by_step_and_time(summary["results"], title, workdir / "loss.png", log_loss=log_loss)
