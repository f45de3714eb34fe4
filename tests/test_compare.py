"""Baseline tuning: the learning-rate grid, and its growth until the best rate is inside it."""

import json
import math

import numpy as np
import pytest

from l2lgd.compare import (
    MAX_GRID_EXTENSIONS,
    LearningRateSearch,
    compare,
    learning_rate_grid,
    tune_learning_rate,
)
from l2lgd.config import EvalConfig, with_overrides
from l2lgd.evaluate import baseline_curves
from l2lgd.results import GRID_EDGE, GRID_EDGE_NOTE, SUMMARY_FILE, TUNING_FILE
from l2lgd.seeds import TUNING_STREAM, stream_key
from l2lgd.tasks import make_task

pytestmark = pytest.mark.usefixtures("compilation_cache")

# SGD on the tiny quadratics does best near 0.01 and diverges from about 0.03 on.
TOO_SMALL = ["eval.lr_min=1e-4", "eval.lr_max=1e-3", "eval.lr_per_decade=2"]
TOO_LARGE = ["eval.lr_min=10", "eval.lr_max=100", "eval.lr_per_decade=1"]
# Six more rates at four per decade cannot climb from 1e-8 to SGD's best rate.
FAR_TOO_SMALL = ["eval.lr_min=1e-9", "eval.lr_max=1e-8", "eval.lr_per_decade=4"]


def reference_scores(config, name, rates):
    """Mean final loss on the tuning problems per rate, every rate in one call (inf if diverged)."""
    curves = baseline_curves(
        make_task(config.task),
        name,
        np.asarray(rates),
        stream_key(config.seed, TUNING_STREAM),
        config.eval.num_tuning_problems,
        config.eval.num_steps,
    )
    finals = curves[:, -1].mean(axis=-1)
    return np.where(np.isfinite(finals), finals, np.inf)


def test_grid_extensions_continue_its_log_spacing():
    config = EvalConfig(lr_min=1e-3, lr_max=1.0, lr_per_decade=2)
    base = learning_rate_grid(config)
    np.testing.assert_allclose(base, [1e-3, 10**-2.5, 1e-2, 10**-1.5, 1e-1, 10**-0.5, 1.0])
    grown = learning_rate_grid(config, below=2, above=3)
    np.testing.assert_allclose(grown, 10.0 ** np.arange(-4.0, 1.6, 0.5), rtol=1e-12)
    np.testing.assert_array_equal(grown[2:-3], base)
    assert grown[0] == 1e-4 and grown[-1] == 10**1.5


def test_a_grid_too_small_grows_upwards_until_the_best_rate_is_inside(tiny_config):
    config = with_overrides(tiny_config, TOO_SMALL)
    initial = learning_rate_grid(config.eval)
    initial_scores = reference_scores(config, "sgd", initial)
    assert np.argmin(initial_scores) == len(initial) - 1  # the premise: best on the top edge

    search = tune_learning_rate(make_task(config.task), "sgd", config)

    assert search.extended_below == 0 and 0 < search.extended_above <= MAX_GRID_EXTENSIONS
    rates = np.array(list(search.scores))
    np.testing.assert_allclose(rates, learning_rate_grid(config.eval, 0, search.extended_above))
    # Rates evaluated a few at a time score as the whole final grid evaluated at once.
    expected = reference_scores(config, "sgd", rates)
    np.testing.assert_allclose(list(search.scores.values()), expected, rtol=1e-5)
    best = int(np.argmin(expected))
    assert 0 < best < len(rates) - 1
    assert search.best_learning_rate == rates[best] and search.best_is_interior
    assert expected[best - 1] > expected[best] and expected[best + 1] > expected[best]
    # It stopped at the first rate past the best one: one rate fewer would leave it on the edge.
    assert best == len(rates) - 2


def test_a_grid_too_large_grows_downwards_past_the_diverged_rates(tiny_config):
    config = with_overrides(tiny_config, TOO_LARGE)
    search = tune_learning_rate(make_task(config.task), "sgd", config)

    assert search.extended_above == 0 and search.extended_below > 0
    rates = list(search.scores)
    assert rates == sorted(rates) and rates[-1] == 100.0
    assert math.isinf(search.scores[10.0]) and math.isinf(search.scores[100.0])  # diverged
    assert search.best_is_interior and math.isfinite(search.scores[search.best_learning_rate])
    assert rates[0] < search.best_learning_rate < 10.0


def test_the_growth_stops_after_its_cap_and_says_the_best_rate_is_on_the_edge(tiny_config):
    config = with_overrides(tiny_config, FAR_TOO_SMALL)
    search = tune_learning_rate(make_task(config.task), "sgd", config)
    assert (search.extended_below, search.extended_above) == (0, MAX_GRID_EXTENSIONS)
    assert len(search.scores) == len(learning_rate_grid(config.eval)) + MAX_GRID_EXTENSIONS
    assert search.best_learning_rate == max(search.scores)
    assert not search.best_is_interior


@pytest.mark.parametrize(
    ("scores", "best", "interior"),
    [
        ({0.1: 3.0, 1.0: 1.0, 10.0: 2.0}, 1.0, True),
        ({0.1: 1.0, 1.0: 2.0, 10.0: math.inf}, 0.1, False),
        ({0.1: 3.0, 1.0: 2.0, 10.0: 1.0}, 10.0, False),
        ({0.1: math.inf, 1.0: 1.0, 10.0: math.inf}, 1.0, True),  # diverged on both sides
        ({0.1: math.inf, 1.0: math.inf, 10.0: math.inf}, 0.1, False),  # ties: the smallest
        ({0.1: 2.0, 1.0: 1.0, 10.0: 1.0}, 1.0, True),
    ],
)
def test_best_rate_and_whether_it_is_interior(scores, best, interior):
    search = LearningRateSearch(scores)
    assert search.best_learning_rate == best
    assert search.best_is_interior == interior


def test_tuning_json_records_the_final_grid_and_its_growth(tiny_config, tmp_path):
    config = with_overrides(tiny_config, TOO_SMALL)
    compare(config, ["sgd"], [], tmp_path)
    record = json.loads((tmp_path / TUNING_FILE).read_text())["sgd"]

    assert record["extended_below"] == 0 and record["extended_above"] > 0
    assert record["best_is_interior"] is True
    grid = learning_rate_grid(config.eval, 0, record["extended_above"])
    np.testing.assert_allclose(record["learning_rates"], grid, rtol=1e-12)
    scores = record["final_mean_loss_by_learning_rate"]
    assert [float(rate) for rate in scores] == record["learning_rates"]
    # null where a rate diverged: JSON has no inf.
    finite = {float(rate): loss for rate, loss in scores.items() if loss is not None}
    assert record["best_learning_rate"] == min(finite, key=finite.get)
    curves = json.loads((tmp_path / "curves.json").read_text())
    assert curves["optimizers"]["sgd"]["learning_rate"] == record["best_learning_rate"]


def test_summary_marks_a_baseline_tuned_on_the_grid_edge(tiny_config, tmp_path):
    """The capped search's rate is flagged in summary.md, with a note; an interior one is not."""
    compare(with_overrides(tiny_config, FAR_TOO_SMALL), ["sgd"], [], tmp_path / "edge")
    compare(with_overrides(tiny_config, TOO_SMALL), ["sgd"], [], tmp_path / "interior")
    edge = (tmp_path / "edge" / SUMMARY_FILE).read_text()
    interior = (tmp_path / "interior" / SUMMARY_FILE).read_text()
    sgd_row = next(line for line in edge.splitlines() if line.startswith("| sgd |"))
    assert f"({GRID_EDGE})" in sgd_row and GRID_EDGE_NOTE in edge
    assert GRID_EDGE not in interior
