"""scripts/paired_ratios.py: the paired bootstrap CI of a ratio of mean final losses."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from l2lgd.results import comparison_from_document, load_comparison, save_comparison

SPEC = importlib.util.spec_from_file_location(
    "paired_ratios", Path(__file__).parents[1] / "scripts" / "paired_ratios.py"
)
paired_ratios = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(paired_ratios)


def test_a_proportional_optimizer_has_an_exact_ratio():
    reference = np.random.default_rng(0).lognormal(size=200)
    low, high = paired_ratios.bootstrap_ratio_ci(0.8 * reference, reference, 500, seed=1)
    np.testing.assert_allclose([low, high], [0.8, 0.8], rtol=1e-12)


def test_pairing_resolves_a_small_shared_noise_difference():
    rng = np.random.default_rng(2)
    reference = rng.lognormal(sigma=1.0, size=300)  # spread far larger than the difference
    losses = 0.95 * reference * rng.lognormal(sigma=0.05, size=300)
    low, high = paired_ratios.bootstrap_ratio_ci(losses, reference, 2000, seed=3)
    assert low < losses.mean() / reference.mean() < high < 1.0
    curves = {
        "optimizers": {
            name: {
                "learning_rate": None,
                "final_losses": list(values),
                "final_mean": values.mean(),
                "final_ci95": 0.1,
            }
            for name, values in (("ref", reference), ("new", losses))
        }
    }
    table = paired_ratios.ratio_table(comparison_from_document(curves), "ref", resamples=200)
    assert "| new |" in table and "| 1.000 | [1.000, 1.000] |" in table


def test_a_diverged_optimizer_gets_a_row_that_says_so():
    reference = np.linspace(1.0, 2.0, 4)
    entry = {"learning_rate": None, "final_ci95": 0.1}
    curves = {
        "optimizers": {
            "ref": {**entry, "final_losses": list(reference), "final_mean": 1.5},
            "bad": {**entry, "final_losses": [1.0, None, 1.0, 1.0], "final_mean": None},
        }
    }
    table = paired_ratios.ratio_table(comparison_from_document(curves), "ref", resamples=50)
    assert "| bad | diverged on 1 of 4 | | | |" in table


def _comparison(labels: list[str], test_seed: int = 5):
    entry = {"learning_rate": None, "final_ci95": 0.1, "final_mean": 1.5}
    return comparison_from_document(
        {
            "task": "cifar10",
            "test_seed": test_seed,
            "num_problems": 2,
            "num_steps": 10,
            "config": {"task": {"name": "cifar10"}},
            "optimizers": {label: {**entry, "final_losses": [1.0, 2.0]} for label in labels},
        }
    )


def test_comparisons_on_the_same_problems_merge_and_others_are_refused(tmp_path):
    both = paired_ratios.merged([_comparison(["nag", "adam"]), _comparison(["LSTM (new)"])])
    assert both.labels == ["nag", "adam", "LSTM (new)"]
    save_comparison(tmp_path, both)  # what --save writes loads back as the merged comparison
    assert load_comparison(tmp_path).labels == both.labels
    with pytest.raises(SystemExit, match="test_seed 5 against 6"):
        paired_ratios.merged([_comparison(["nag"]), _comparison(["LSTM"], test_seed=6)])
    with pytest.raises(SystemExit, match="in two comparisons: nag"):
        paired_ratios.merged([_comparison(["nag"]), _comparison(["nag"])])
