"""The architecture sweep (Figure 6): one comparison per architecture, resumable, and its figure."""

import json

import pytest
from test_cli import PNG_MAGIC, assert_user_error, l2l
from test_mlp import TINY_MNIST_SETS, tiny_mnist  # noqa: F401 (a fixture)

from l2lgd.config import load_config
from l2lgd.sweep import architecture_config

pytestmark = pytest.mark.usefixtures("compilation_cache")


def test_architecture_config_sets_the_hidden_layers():
    config = architecture_config(load_config("configs/mnist.yaml"), 2, 40)
    assert config.task.hidden_sizes == (40, 40)
    assert config.optimizer == load_config("configs/mnist.yaml").optimizer


def test_sweep_compares_every_architecture_and_reuses_finished_ones(tmp_path, tiny_mnist):  # noqa: F811
    data_dir, _ = tiny_mnist
    sets = [item for override in TINY_MNIST_SETS for item in ("--set", override)]
    arguments = [
        "sweep",
        "--learned",
        "mnist",
        "--config",
        "configs/mnist.yaml",
        "--layers",
        "1,2",
        "--units",
        "4",
        "--baselines",
        "adam",
        "--data-dir",
        data_dir,
        *sets,
        "--out",
        tmp_path,
    ]
    result = l2l(*arguments)
    assert result.exit_code == 0, result.output
    sweep = json.loads((tmp_path / "sweep.json").read_text())
    assert set(sweep["optimizers"]) == {"LSTM (pretrained mnist)", "adam"}
    rows = sweep["optimizers"]["adam"]
    assert [(row["depth"], row["width"]) for row in rows] == [(1, 4), (2, 4)]
    assert all(row["final_mean"] > 0 and row["learning_rate"] for row in rows)
    assert (tmp_path / "sweep.png").read_bytes().startswith(PNG_MAGIC)
    curves = tmp_path / "2x4" / "curves.json"
    assert json.loads(curves.read_text())["config"]["task"]["hidden_sizes"] == [4, 4]
    stamp = curves.stat().st_mtime_ns
    again = l2l(*arguments)
    assert again.exit_code == 0, again.output
    assert curves.stat().st_mtime_ns == stamp
    assert json.loads((tmp_path / "sweep.json").read_text()) == sweep


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--units", "5,x"], "--units takes comma-separated integers"),
        (["--layers", "0"], "--layers takes positive integers"),
        (["--task", "quadratic"], "--task mnist"),
    ],
)
def test_bad_sweep_arguments_are_one_line_errors(arguments, message, tmp_path):
    result = l2l("sweep", "--learned", "mnist", *arguments, "--out", tmp_path)
    assert_user_error(result, message)
