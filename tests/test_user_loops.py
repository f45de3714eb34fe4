"""The examples' shared pieces: a learning-rate search whose grid grows past an edge until the best
rate is inside, and the summary of runs over seeds."""

import math

import pytest

from l2lgd.user_loops import mean_or_inf, summarize_seeds, tune_on_growing_grid


def bowl(lr: float) -> float:
    """Lowest at lr = 10^-2.6, between the grid points 10^-2.5 and 10^-3."""
    return (math.log10(lr) + 2.6) ** 2


def test_grid_grows_below_until_the_best_rate_is_interior():
    scored = []

    def score(lr):
        scored.append(lr)
        return bowl(lr)

    best, grid = tune_on_growing_grid(score, [0.1, 1.0], max_growth=6)
    assert best == pytest.approx(10**-2.5)
    assert min(grid) < best < max(grid)  # interior
    assert list(grid) == sorted(grid) and len(scored) == len(grid) == 6  # 0.1/sqrt(10)^k, k<=4


def test_growth_stops_at_its_limit_and_diverged_runs_lose():
    best, grid = tune_on_growing_grid(bowl, [0.1, 1.0], max_growth=1)
    assert len(grid) == 3 and best == min(grid)  # still on the edge: the limit stopped it
    assert mean_or_inf([1.0, float("nan")]) == math.inf and mean_or_inf([1.0, 3.0]) == 2.0
    best, _ = tune_on_growing_grid(lambda lr: math.inf if lr > 0.5 else bowl(lr), [0.1, 1.0], 0)
    assert best == 0.1


def test_summarize_seeds_averages_curves_and_times_each_step():
    runs = [
        {"losses": [2.0, 1.0], "times": [0.0, 0.4], "final": 1.0},
        {"losses": [4.0, 3.0], "times": [0.0, 0.2], "final": 3.0},
    ]
    summary = summarize_seeds(runs, steps_timed=1)
    assert summary["mean_curve"] == [3.0, 2.0] and summary["finals"] == [1.0, 3.0]
    assert summary["final"] == 2.0 and summary["mean_times"] == pytest.approx([0.0, 0.3])
    assert summary["ms_per_step"] == pytest.approx(300.0)  # median of 400 and 200 ms
