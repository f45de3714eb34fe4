"""`make reproduce`: the report, skipping current steps, resuming a run cut short, missing data."""

import json
from pathlib import Path

import pytest
from conftest import TINY_OVERRIDES
from typer.testing import CliRunner

from l2lgd import runs
from l2lgd.checkpoint import load_tree
from l2lgd.cli import app
from l2lgd.config import shipped_config_names
from l2lgd.data import DATA_DIR_ENV
from l2lgd.errors import ConfigError
from l2lgd.meta.train import meta_train
from l2lgd.reproduce import (
    EXPERIMENTS,
    PROFILES,
    TRAININGS,
    Experiment,
    Outcome,
    Profile,
    reproduce,
    shipped_beside_cut_runs,
    training_config,
    write_report,
)
from l2lgd.results import CURVES_FILE

pytestmark = pytest.mark.usefixtures("compilation_cache")

TINY = PROFILES["smoke"]  # the tests' budget: conftest.TINY_OVERRIDES


class Killed(Exception):
    """Stands for the process being killed during meta-training."""


def run_tiny(tmp_path, only, log_lines, **kwargs):
    return reproduce(
        TINY,
        tmp_path / "runs",
        tmp_path / "results",
        only=only,
        log=log_lines.append,
        **kwargs,
    )


def test_every_experiment_names_a_config_and_a_training_that_exist():
    trainings = {t.name for t in TRAININGS}
    for experiment in EXPERIMENTS:
        assert experiment.config in shipped_config_names()
        assert set(experiment.trainings) <= trainings
    for training in TRAININGS:
        assert training.config in shipped_config_names()
    assert {"default", "paper", "smoke"} <= set(PROFILES)


def test_report_then_rerun_skips_every_current_step(tmp_path):
    lines = []
    report = run_tiny(tmp_path, ("quadratic",), lines)

    text = report.read_text()
    assert "## Figure 4" in text and "### Figure 4, left: quadratic" in text
    assert "Paper: On random 10-d quadratics" in text
    assert "![quadratic](quadratic/loss.png)" in text
    assert (report.parent / "quadratic" / "loss.png").is_file()
    for name in ("sgd", "momentum", "nag", "rmsprop", "adam"):
        assert f"| {name} |" in text
    (row,) = [line for line in text.splitlines() if line.startswith("| quadratic |")]
    assert row.endswith(("| yes |", "| **no** |"))
    assert "meta-train quadratic" in text  # the wall-time table
    # The tiny profile cuts meta-training short, so the shipped optimizer is compared too.
    assert "| LSTM (pretrained quadratic) |" in text
    assert "also shows the shipped optimizer (`quadratic`)" in text

    curves = report.parent / "quadratic" / CURVES_FILE
    before = curves.stat().st_mtime_ns
    # A stamp from before a config field existed (here eval.test_metrics, at its default) holds.
    stamp_path = report.parent / "quadratic" / "inputs.json"
    stamp = json.loads(stamp_path.read_text())
    del stamp["config"]["eval"]["test_metrics"]
    stamp_path.write_text(json.dumps(stamp))
    lines.clear()
    run_tiny(tmp_path, ("quadratic",), lines)
    assert sum("up to date, skipped" in line for line in lines) == 2
    assert curves.stat().st_mtime_ns == before

    # A stamp without the baselines (from before momentum joined them) is stale: compared anew.
    stamp = json.loads(stamp_path.read_text())
    assert stamp["baselines"] == ["sgd", "momentum", "nag", "rmsprop", "adam"]
    del stamp["baselines"]
    stamp_path.write_text(json.dumps(stamp))
    lines.clear()
    run_tiny(tmp_path, ("quadratic",), lines)
    (skipped,) = [line for line in lines if "up to date, skipped" in line]
    assert skipped.startswith("meta-train")
    assert curves.stat().st_mtime_ns != before


def test_a_run_cut_short_is_resumed_and_a_changed_config_retrains(tmp_path):
    (training,) = [t for t in TRAININGS if t.name == "quadratic_deepmind"]
    config = training_config(training, TINY)
    run_dir = tmp_path / "runs" / "quadratic_deepmind"
    runs.create_run_dir(run_dir, config)

    def die(record):
        if record["iteration"] == 4:
            raise Killed

    with pytest.raises(Killed):
        meta_train(config, run_dir, on_iteration=die)
    lines = []
    run_tiny(tmp_path, ("quadratic_deepmind",), lines)
    assert any("resuming" in line for line in lines)
    assert load_tree(runs.training_state_path(run_dir))["iteration"] == config.meta.iterations

    longer = Profile("tiny", "", train={"*": (*TINY_OVERRIDES, "meta.iterations=9")})
    lines.clear()
    reproduce(
        longer,
        tmp_path / "runs",
        tmp_path / "results",
        None,
        ("quadratic_deepmind",),
        log=lines.append,
    )
    assert any("9 iterations" in line for line in lines)
    assert any("compare" in line and "skipped" not in line for line in lines)  # new weights


def test_missing_data_skips_those_experiments_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    lines = []
    report = run_tiny(tmp_path, ("mnist", "mnist_relu"), lines)
    text = report.read_text()
    assert text.count("skipped: data not available") == 2
    assert DATA_DIR_ENV in text
    assert not (tmp_path / "runs" / "mnist").exists()


def test_unknown_experiment_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="mnist_2layers"):
        run_tiny(tmp_path, ("cifar99",), [])


def fake_comparison(out_dir: Path, learned: float, best_baseline: float) -> None:
    """A comparison folder's curves.json with chosen final losses (the report reads no more)."""
    out_dir.mkdir(parents=True)
    entry = {"final_ci95": 0.01, "test_metrics": {}}
    optimizers = {
        "LSTM (x)": {**entry, "learning_rate": None, "final_mean": learned},
        "adam": {**entry, "learning_rate": 0.1, "final_mean": best_baseline},
        "sgd": {**entry, "learning_rate": 0.1, "final_mean": 10 * best_baseline},
    }
    (out_dir / CURVES_FILE).write_text(json.dumps({"optimizers": optimizers}))


@pytest.mark.parametrize(
    ("learned_wins", "learned", "held"),
    [(True, 0.5, "yes"), (True, 2.0, "**no**"), (False, 2.0, "yes"), (False, 0.5, "**no**")],
)
def test_claim_held_follows_the_direction_of_the_papers_claim(
    tmp_path, learned_wins, learned, held
):
    experiment = Experiment("e", "Figure 9, left", "claim", "c.yaml", ("t",), learned_wins)
    fake_comparison(tmp_path / "e", learned, 1.0)
    report = write_report(tmp_path, TINY, [Outcome(experiment, tmp_path / "e")], {})
    (row,) = [line for line in report.read_text().splitlines() if line.startswith("| e |")]
    assert row.endswith(f"| {learned / 1.0:.3f} | {held} |")
    assert "adam" in row


def test_cli_rejects_an_unknown_profile():
    result = CliRunner().invoke(app, ["reproduce", "--profile", "huge"])
    assert result.exit_code == 2
    assert "default, paper" in result.stderr


def test_shipped_optimizers_join_only_when_the_profile_cuts_meta_training():
    (quadratic,) = [e for e in EXPERIMENTS if e.name == "quadratic"]
    full_budget = Profile("full", "the configs as written")
    assert shipped_beside_cut_runs(quadratic, full_budget) == []
    assert shipped_beside_cut_runs(quadratic, TINY) == ["pretrained:quadratic"]
