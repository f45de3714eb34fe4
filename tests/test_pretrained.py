"""Shipped optimizers: each still reaches its stored figure, names resolve, and they ship in a wheel."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import TINY_OVERRIDES
from typer.testing import CliRunner

from l2lgd import pretrained, runs
from l2lgd.checkpoint import load_weights
from l2lgd.cli import app
from l2lgd.compare import compare
from l2lgd.config import Config, with_overrides
from l2lgd.data import DATA_DIR_ENV
from l2lgd.errors import L2LError
from l2lgd.meta.train import meta_train
from l2lgd.sources import load_learned

pytestmark = pytest.mark.usefixtures("compilation_cache")

REPO = Path(__file__).resolve().parent.parent
SHIPPED = ["cifar10", "cifar10_sub", "mnist", "quadratic", "quadratic_deepmind", "style"]
# What each shipped file's stored comparison must show: its least number of test problems, and
# whether the optimizer's mean final loss ends below every tuned baseline's (README, "Results").
MIN_TEST_PROBLEMS = {"cifar10": 50, "cifar10_sub": 50, "style": 20}
BEATS_EVERY_BASELINE = {
    "cifar10": True,  # 0.979 of tuned NAG, paired 95% CI [0.962, 0.996]
    "cifar10_sub": False,  # on CIFAR-2: 1.041 of tuned NAG, paired 95% CI [0.970, 1.112]
    "mnist": True,
    "quadratic": True,
    "quadratic_deepmind": True,
    "style": True,  # 0.991 of tuned NAG, but its paired 95% CI [0.973, 1.008] includes 1
}


def test_the_package_ships_the_documented_optimizers():
    assert pretrained.pretrained_names() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_provenance_is_complete(name):
    provenance = pretrained.read_provenance(name)
    assert provenance["config"]["task"]["name"] in name
    assert isinstance(provenance["config"]["seed"], int)
    assert provenance["code_version"].startswith("0.1.0")
    assert provenance["description"]
    evaluation = provenance["evaluation"]
    assert evaluation["num_problems"] >= MIN_TEST_PROBLEMS.get(name, 100)
    learned, baselines = evaluation["learned"]["final_mean"], evaluation["baselines"]
    assert {"adam", "rmsprop", "nag", "sgd"} <= set(baselines)
    finite = [b["final_mean"] for b in baselines.values() if b["final_mean"] is not None]
    best = min(finite)  # a baseline that diverged on a test problem (None) cannot be the best
    np.testing.assert_allclose(evaluation["ratio_to_best_baseline"], learned / best)
    assert (evaluation["ratio_to_best_baseline"] < 1) == BEATS_EVERY_BASELINE[name]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_optimizer_still_reaches_its_stored_figure(name):
    """Re-runs each file's check evaluation: a code change that alters what the weights do fails."""
    weights, _, provenance = load_weights(pretrained.pretrained_path(name))
    if provenance["config"]["task"]["name"] != "quadratic" and not os.environ.get(DATA_DIR_ENV):
        pytest.skip(f"MNIST and CIFAR-10 files not available (set {DATA_DIR_ENV})")
    check = provenance["check"]
    spec = pretrained.CheckSpec(check["seed"], check["num_problems"], check["num_steps"])
    figure = pretrained.check_figure(weights, provenance, spec)
    np.testing.assert_allclose(figure, check["mean_final_loss"], rtol=check["rtol"])
    assert check["rtol"] <= 0.01


@pytest.mark.parametrize("spec", ["quadratic", "pretrained:quadratic"])
def test_a_pretrained_name_loads_the_shipped_file(spec):
    learned = load_learned(spec)
    weights, config, _ = load_weights(pretrained.weights_dir() / "quadratic.msgpack")
    assert learned.config == config
    for actual, expected in zip(
        jax.tree.leaves(learned.weights), jax.tree.leaves(weights), strict=True
    ):
        np.testing.assert_array_equal(actual, expected)
    assert learned.label == "LSTM (pretrained quadratic)"


def test_an_existing_path_wins_over_a_pretrained_name(tmp_path, monkeypatch):
    weights, config, provenance = load_weights(pretrained.pretrained_path("mnist"))
    from l2lgd.checkpoint import save_weights

    save_weights(tmp_path / "quadratic", weights, config, provenance)
    monkeypatch.chdir(tmp_path)
    assert load_learned("quadratic").config == config  # the MNIST weights under that file name
    assert load_learned("pretrained:quadratic").config != config


def test_an_unknown_name_lists_the_shipped_ones():
    with pytest.raises(L2LError, match="quadratic_deepmind"):
        load_learned("cifar-not-shipped")


def test_package_pretrained_stores_figures_that_check_figure_reproduces(tmp_path):
    config = with_overrides(Config(), TINY_OVERRIDES)
    run_dir, comparison_dir = tmp_path / "run", tmp_path / "compare"
    runs.create_run_dir(run_dir, config)
    meta_train(config, run_dir)
    compare(config, ["adam", "sgd"], [load_learned(run_dir)], comparison_dir)
    check = pretrained.CheckSpec(seed=3, num_problems=8, num_steps=10)

    suite = {"test_seed": 9, "wins": 1, "tasks": {"a": {"best_baseline": "adam", "ratio": 0.5}}}
    path = pretrained.package_pretrained(
        "tiny", run_dir, comparison_dir, "a test", check, tmp_path, suite=suite
    )

    weights, _, provenance = load_weights(path)
    assert provenance["suite"] == suite
    assert provenance["check"]["num_problems"] == 8
    assert provenance["evaluation"]["baselines"].keys() == {"adam", "sgd"}
    figure = pretrained.check_figure(weights, provenance, check)
    assert figure == pytest.approx(provenance["check"]["mean_final_loss"], rel=1e-6)
    other = pretrained.check_figure(weights, provenance, pretrained.CheckSpec(4, 8, 10))
    assert other != pytest.approx(figure, rel=1e-3)  # the stored figure depends on its problems


def test_l2l_pretrained_lists_every_shipped_optimizer_with_its_figures():
    result = CliRunner().invoke(app, ["pretrained"])
    assert result.exit_code == 0, result.output
    for name in SHIPPED:
        assert f"{name}: " in result.stdout
        ratio = pretrained.read_provenance(name)["evaluation"]["ratio_to_best_baseline"]
        assert f"(ratio {ratio:.3f})" in result.stdout


def test_compare_and_evaluate_accept_a_pretrained_name(tmp_path):
    sets = [arg for override in TINY_OVERRIDES for arg in ("--set", override)]
    out = tmp_path / "compare"
    result = CliRunner().invoke(
        app,
        ["compare", "--baselines", "adam", "--learned", "quadratic", "--out", str(out), *sets],
    )
    assert result.exit_code == 0, result.output
    assert "LSTM (pretrained quadratic)" in (out / "summary.md").read_text()

    out = tmp_path / "evaluate"
    result = CliRunner().invoke(
        app, ["evaluate", "--optimizer", "quadratic_deepmind", "--out", str(out), *sets]
    )
    assert result.exit_code == 0, result.output
    # With no --task and no --config, it runs on the task it was trained on.
    assert "quadratic: 16 held-out problems" in (out / "summary.md").read_text()


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory) -> Path:
    """This checkout built into a wheel, once for the tests that inspect or install it."""
    wheel_dir = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation"]
        + ["--quiet", "--wheel-dir", str(wheel_dir)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheel_dir.glob("l2lgd-*.whl")
    return wheel


def run_installed(wheel: Path, tmp_path: Path, code: str) -> str:
    """Runs `code` with the wheel unpacked into its own folder (a fresh install), from outside
    this checkout; returns its stdout."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(site)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def test_a_built_wheel_ships_the_configs_and_loads_one_by_name_when_installed(
    built_wheel, tmp_path
):
    shipped = sorted(n for n in zipfile.ZipFile(built_wheel).namelist() if n.endswith(".yaml"))
    assert shipped == [f"l2lgd/configs/{p.name}" for p in sorted((REPO / "configs").glob("*.yaml"))]
    code = (
        "import l2lgd.config as c, l2lgd.reproduce as r\n"
        "print(c.__file__, c.load_config('mnist_40units').task.hidden_sizes[0])\n"
        "print(all(c.load_config(t.config) for t in r.TRAININGS + r.EXPERIMENTS))\n"
    )
    location, units, every_experiment_loads = run_installed(built_wheel, tmp_path, code).split()
    assert Path(location).is_relative_to(tmp_path / "site")  # the installed copy, not this checkout
    assert (units, every_experiment_loads) == ("40", "True")


def test_a_built_wheel_ships_the_weights_and_resolves_a_name_when_installed(built_wheel, tmp_path):
    """A fresh install (the wheel unpacked into its own folder) finds the shipped optimizers."""
    shipped = sorted(n for n in zipfile.ZipFile(built_wheel).namelist() if n.endswith(".msgpack"))
    assert shipped == [f"l2lgd/weights/{name}.msgpack" for name in SHIPPED]
    code = (
        "import l2lgd, optax, jax.numpy as jnp\n"
        "opt = l2lgd.load_optimizer('mnist')\n"
        "params = {'w': jnp.ones(3)}\n"
        "updates, _ = opt.update({'w': jnp.ones(3)}, opt.init(params))\n"
        "print(l2lgd.__file__, float(jnp.abs(updates['w']).sum()) > 0)\n"
    )
    location, moved = run_installed(built_wheel, tmp_path, code).split()
    assert Path(location).is_relative_to(tmp_path / "site")  # the installed copy, not this checkout
    assert moved == "True"


def write_final_means(folder: Path, means: dict[str, tuple[float | None, float]]) -> None:
    """A curves.json holding only final means: label -> (learning rate or None, final mean)."""
    optimizers = {
        label: {"learning_rate": learning_rate, "final_mean": mean, "final_ci95": 0.01}
        for label, (learning_rate, mean) in means.items()
    }
    document = {"test_seed": 5, "num_problems": 50, "num_steps": 100, "optimizers": optimizers}
    (folder / "curves.json").write_text(json.dumps(document))


def test_evaluation_figures_pick_the_labelled_optimizer_of_several(tmp_path):
    write_final_means(
        tmp_path, {"LSTM (a)": (None, 0.9), "LSTM (b)": (None, 0.8), "nag": (0.03, 1.0)}
    )
    figures = pretrained.evaluation_figures(tmp_path, "LSTM (b)")
    assert figures["learned"]["final_mean"] == 0.8
    assert figures["ratio_to_best_baseline"] == pytest.approx(0.8)
    with pytest.raises(L2LError, match="holds 2 learned optimizers; expected 1"):
        pretrained.evaluation_figures(tmp_path)


def test_refresh_evaluation_replaces_the_figures_and_keeps_weights_and_check(tmp_path):
    write_final_means(tmp_path, {"LSTM": (None, 0.2), "momentum": (0.1, 0.4)})
    before_weights, _, before = load_weights(pretrained.pretrained_path("quadratic"))

    path = pretrained.refresh_evaluation("quadratic", tmp_path, out_dir=tmp_path)

    weights, _, after = load_weights(path)
    assert after["evaluation"]["baselines"].keys() == {"momentum"}
    assert after["evaluation"]["ratio_to_best_baseline"] == pytest.approx(0.5)
    assert after["check"] == before["check"]
    assert jax.tree.all(jax.tree.map(np.array_equal, weights, before_weights))


def test_the_suite_line_counts_wins_and_names_each_tasks_ratio():
    from l2lgd.cli import _suite_line

    suite = {
        "test_seed": 5,
        "wins": 1,
        "tasks": {"quadratic": {"ratio": 0.512}, "mnist": {"ratio": None}},
    }
    assert _suite_line(suite) == (
        "held-out suite (seed 5): beats the best tuned baseline on 1 of 2 tasks; "
        "ratio per task: quadratic 0.51, mnist diverged"
    )
