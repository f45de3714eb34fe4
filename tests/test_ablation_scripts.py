"""scripts/ablation.py and scripts/suite.py: their configs are valid, and their tables pair the
ratios."""

import sys
from pathlib import Path

import numpy as np
import pytest

from l2lgd.config import load_config
from l2lgd.results import comparison_from_document

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
import ablation  # noqa: E402
import suite  # noqa: E402


@pytest.mark.parametrize("task", sorted(ablation.VARIANTS))
def test_every_variant_and_setting_is_a_valid_config(task):
    for variant in ablation.VARIANTS[task].values():
        for setting in ablation.SETTINGS[task].values():
            config = load_config(task, [*variant, *setting])
            assert config.task.name == task


def test_every_suite_task_is_a_shipped_config_of_its_specialists_family():
    for task, specialist in suite.SUITE.items():
        assert load_config(task).task.name == load_config(specialist).task.name


def _comparison(finals: dict[str, list[float | None]]):
    return comparison_from_document(
        {
            "optimizers": {
                label: {
                    "learning_rate": None if label.startswith("LSTM") else 0.1,
                    "final_ci95": 0.1,
                    "final_losses": losses,
                    "final_mean": None if None in losses else float(np.mean(losses)),
                }
                for label, losses in finals.items()
            }
        }
    )


def test_paired_ratio_and_its_cell():
    reference = list(np.linspace(1.0, 3.0, 50))
    comparison = _comparison(
        {
            "LSTM (a)": [0.5 * x for x in reference],
            "LSTM (b)": [1.0, None, *reference[2:]],
            "sgd": [2.0 * x for x in reference],
            "adam": reference,
        }
    )
    assert comparison.best_baseline().label == "adam"
    np.testing.assert_allclose(ablation.paired_ratio(comparison, "LSTM (a)", "adam"), 0.5)
    assert ablation.ratio_cell(comparison, "LSTM (a)", "adam") == "0.50 [0.50, 0.50]"
    assert ablation.paired_ratio(comparison, "LSTM (b)", "adam") is None
    assert ablation.ratio_cell(comparison, "LSTM (b)", "adam") == "diverged on 1"
