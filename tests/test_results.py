"""The results model: save and load a comparison, learned or baseline, the ratio to the best
baseline, diverged optimizers, files written by earlier code and the shipped figures."""

import json
import math

import numpy as np
import pytest

from l2lgd import pretrained
from l2lgd.evaluate import CurveSummary
from l2lgd.jsonsafe import json_safe
from l2lgd.results import (
    CURVES_FILE,
    SUMMARY_FILE,
    TUNING_FILE,
    Comparison,
    OptimizerResult,
    comparison_document,
    comparison_from_figures,
    figures_record,
    load_comparison,
    save_comparison,
    summary_table,
)

# A comparison folder exactly as the code before the results model wrote it (save_curves and
# write_comparison): no `description`; null where a value diverged.
OLD_CURVES = {
    "task": "quadratic",
    "num_problems": 3,
    "num_steps": 2,
    "test_seed": 7,
    "config": {"seed": 1, "eval": {"seed": 7, "num_problems": 3}},
    "optimizers": {
        "LSTM (run)": {
            "learning_rate": None,
            "mean": [4.0, 2.0, 1.0],
            "ci95": [0.5, 0.25, 0.125],
            "final_mean": 1.0,
            "final_ci95": 0.125,
            "final_losses": [0.5, 1.0, 1.5],
            "test_metrics": {
                "test_accuracy": {"mean": 0.9, "ci95": 0.01, "per_problem": [0.89, 0.9, 0.91]}
            },
        },
        "adam": {
            "learning_rate": 0.01,
            "mean": [4.0, 3.0, 2.5],
            "ci95": [0.5, 0.5, 0.5],
            "final_mean": 2.5,
            "final_ci95": 0.5,
            "final_losses": [2.0, 2.5, 3.0],
            "test_metrics": {},
        },
        "sgd": {
            "learning_rate": 0.1,
            "mean": [4.0, None, None],
            "ci95": [0.5, None, None],
            "final_mean": None,
            "final_ci95": None,
            "final_losses": [1.0, None, 2.0],
            "test_metrics": {},
        },
    },
}
OLD_TUNING = {
    "adam": {"best_learning_rate": 0.01, "final_mean_loss_by_learning_rate": {"0.01": 2.4}},
    "sgd": {"best_learning_rate": 0.1, "final_mean_loss_by_learning_rate": {"1.0": None}},
}


def write_old_folder(path):
    path.mkdir()
    (path / CURVES_FILE).write_text(json.dumps(OLD_CURVES, indent=1))
    (path / TUNING_FILE).write_text(json.dumps(OLD_TUNING, indent=1))
    return path


def test_an_old_comparison_folder_loads(tmp_path):
    comparison = load_comparison(write_old_folder(tmp_path / "old"))

    assert (comparison.task, comparison.test_seed) == ("quadratic", 7)
    assert (comparison.num_problems, comparison.num_steps) == (3, 2)
    assert comparison.config == OLD_CURVES["config"] and comparison.description == ""
    assert comparison.labels == ["LSTM (run)", "adam", "sgd"]
    learned = comparison.optimizer("LSTM (run)")
    np.testing.assert_array_equal(learned.mean, [4.0, 2.0, 1.0])
    np.testing.assert_array_equal(learned.final_losses, [0.5, 1.0, 1.5])
    assert learned.test_metrics["test_accuracy"].mean == 0.9
    assert learned.tuning is None
    assert comparison.optimizer("adam").tuning == OLD_TUNING["adam"]
    sgd = comparison.optimizer("sgd")
    assert math.isnan(sgd.final_mean) and np.isnan(sgd.final_losses[1])
    # The curves file itself loads too (as `l2l plot` and the scripts pass it).
    assert load_comparison(tmp_path / "old" / CURVES_FILE).labels == comparison.labels


def test_a_saved_comparison_keeps_the_old_format_and_adds_only_the_description(tmp_path):
    comparison = load_comparison(write_old_folder(tmp_path / "old"))
    save_comparison(tmp_path / "new", comparison)

    written = json.loads((tmp_path / "new" / CURVES_FILE).read_text())
    assert written == {**OLD_CURVES, "description": ""}
    assert json.loads((tmp_path / "new" / TUNING_FILE).read_text()) == OLD_TUNING
    summary = (tmp_path / "new" / SUMMARY_FILE).read_text()
    assert summary.startswith("# quadratic: 3 held-out problems (test seed 7), 2 steps\n\n|")
    assert "| LSTM (run) | learned | 1 | [0.875, 1.125] | 0.400 | 0.9 ± 0.01 |" in summary
    assert "| adam | 0.01 | 2.5 | [2, 3] | 1.000 |  |" in summary
    assert "| sgd | 0.1 | diverged |  |  |  |" in summary


def summary(label, final_losses, learning_rate=None, metrics=None):
    """An evaluated optimizer whose loss falls linearly from 5 to `final_losses` in 3 steps."""
    final = np.asarray(final_losses, np.float32)
    curves = np.stack([np.full_like(final, 5.0), (5.0 + final) / 2, final])
    return CurveSummary(label, curves, learning_rate, metrics or {})


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # CI of inf
def test_round_trip_from_evaluated_optimizers(tmp_path):
    accuracy = np.array([0.8, 0.9, 0.7], np.float32)
    tuning = {
        "best_learning_rate": 0.1,
        "final_mean_loss_by_learning_rate": {0.1: 1.0, 1.0: math.inf},
    }
    comparison = Comparison(
        task="mnist",
        test_seed=3,
        num_problems=3,
        num_steps=2,
        optimizers=(
            OptimizerResult.from_summary(summary("LSTM", [0.3, 0.1, 0.2], None, {"acc": accuracy})),
            OptimizerResult.from_summary(summary("nag", [0.5, 0.4, 0.6], 0.1), tuning),
            OptimizerResult.from_summary(summary("sgd", [0.5, np.inf, 0.6], 1.0), {}),
        ),
        config={"seed": 0},
        description="one line",
    )
    save_comparison(tmp_path, comparison)
    loaded = load_comparison(tmp_path)

    assert comparison_document(loaded) == comparison_document(comparison)
    assert (loaded.task, loaded.test_seed, loaded.description) == ("mnist", 3, "one line")
    for before, after in zip(comparison.optimizers, loaded.optimizers, strict=True):
        assert (after.label, after.learning_rate, after.tuning) == (
            before.label,
            before.learning_rate,
            before.tuning,
        )
        for field in ("mean", "ci95", "final_losses"):
            np.testing.assert_array_equal(getattr(after, field), getattr(before, field))
        np.testing.assert_array_equal(after.final_mean, before.final_mean)
    lstm = loaded.optimizer("LSTM")
    np.testing.assert_allclose(lstm.mean, [5.0, 2.6, 0.2], rtol=1e-6)
    assert lstm.final_mean == float(np.float32([0.3, 0.1, 0.2]).mean())
    np.testing.assert_allclose(lstm.test_metrics["acc"].per_problem, accuracy)
    assert loaded.optimizer("nag").tuning["final_mean_loss_by_learning_rate"] == {
        "0.1": 1.0,
        "1.0": None,  # inf is not JSON
    }
    assert (tmp_path / SUMMARY_FILE).read_text().startswith("# mnist: 3 held-out problems")


def comparison_of(*optimizers):
    return Comparison(
        "quadratic", 1, 3, 2, tuple(OptimizerResult.from_summary(s) for s in optimizers)
    )


def test_learned_and_baseline_are_told_by_the_learning_rate():
    comparison = comparison_of(summary("LSTM", [1, 1, 1]), summary("adam", [1, 2, 3], 0.01))
    assert [r.learned for r in comparison.optimizers] == [True, False]
    assert [r.label for r in comparison.learned()] == ["LSTM"]
    assert [r.label for r in comparison.baselines()] == ["adam"]


def test_ratio_to_the_best_baseline_matches_a_hand_computation():
    comparison = comparison_of(
        summary("LSTM", [0.2, 0.4, 0.6]),  # mean 0.4
        summary("adam", [0.5, 0.5, 0.8], 0.01),  # mean 0.6: the best finite baseline
        summary("sgd", [0.9, 1.0, 1.1], 0.1),  # mean 1.0
        summary("rmsprop", [0.0, np.nan, 0.0], 0.1),  # diverged: never the best
    )
    assert comparison.best_baseline().label == "adam"
    learned = comparison.optimizer("LSTM")
    np.testing.assert_allclose(comparison.ratio_to_best_baseline(learned), 0.4 / 0.6, rtol=1e-6)
    np.testing.assert_allclose(
        comparison.ratio_to_best_baseline(comparison.optimizer("sgd")), 1.0 / 0.6, rtol=1e-6
    )
    assert "| LSTM | learned | 0.4 | " in summary_table(comparison)
    assert "| 0.667 |" in summary_table(comparison)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # CI of inf
def test_a_diverged_optimizer_is_said_so_everywhere(tmp_path):
    comparison = comparison_of(
        summary("LSTM", [0.2, np.inf, 0.6]), summary("adam", [0.5, 0.5, 0.8], 0.01)
    )
    learned = comparison.optimizer("LSTM")
    assert learned.diverged and not comparison.optimizer("adam").diverged
    assert comparison.ratio_to_best_baseline(learned) == math.inf
    assert "| LSTM | learned | diverged |  |  |" in summary_table(comparison)
    assert figures_record(comparison, learned)["ratio_to_best_baseline"] is None
    save_comparison(tmp_path, comparison)
    written = json.loads((tmp_path / CURVES_FILE).read_text())["optimizers"]["LSTM"]
    assert written["final_mean"] is None and written["final_losses"][1] is None
    assert load_comparison(tmp_path).optimizer("LSTM").diverged

    all_diverged = comparison_of(summary("LSTM", [1, 1, 1]), summary("sgd", [1, np.nan, 1], 1.0))
    assert all_diverged.best_baseline() is None
    assert math.isnan(all_diverged.ratio_to_best_baseline(all_diverged.optimizer("LSTM")))


def test_figures_record_keeps_the_provenance_format(tmp_path):
    comparison = load_comparison(write_old_folder(tmp_path / "old"))
    record = figures_record(comparison, comparison.optimizer("LSTM (run)"))
    assert record == {
        "test_seed": 7,
        "num_problems": 3,
        "num_steps": 2,
        "learned": {
            "learning_rate": None,
            "final_mean": 1.0,
            "final_ci95": 0.125,
            "test_accuracy": 0.9,
        },
        "baselines": {
            "adam": {"learning_rate": 0.01, "final_mean": 2.5, "final_ci95": 0.5},
            "sgd": {"learning_rate": 0.1, "final_mean": None, "final_ci95": None},
        },
        "ratio_to_best_baseline": 0.4,
    }


@pytest.mark.parametrize("name", pretrained.pretrained_names())
def test_shipped_figures_load_and_give_back_the_same_record(name):
    evaluation = pretrained.read_provenance(name)["evaluation"]
    comparison = comparison_from_figures(evaluation)
    (learned,) = comparison.learned()
    assert figures_record(comparison, learned) == evaluation
    assert comparison.ratio_to_best_baseline(learned) == evaluation["ratio_to_best_baseline"]


def test_json_safe_makes_strict_json_through_dicts_and_lists():
    tree = {1.0: [math.inf, (0.5, math.nan)], "loss": -math.inf, "ok": 2.0, "name": "adam"}
    safe = json_safe(tree)
    assert safe == {"1.0": [None, [0.5, None]], "loss": None, "ok": 2.0, "name": "adam"}
    json.dumps(safe, allow_nan=False)  # raises on any inf or NaN left
