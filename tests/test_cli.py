"""The `l2l` command line: help, one-line errors with exit code 2, and the whole pipeline."""

import inspect
import json
import math
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import TINY_OVERRIDES
from typer.testing import CliRunner

from l2lgd import progress, runs
from l2lgd.checkpoint import load_weights
from l2lgd.cli import app, compare_command, sweep_command
from l2lgd.compare import learning_rate_grid
from l2lgd.config import Config, config_to_dict, load_config, save_config, with_overrides
from l2lgd.optimizers.baselines import BASELINE_NAMES

pytestmark = pytest.mark.usefixtures("compilation_cache")

TINY_SETS = [arg for override in TINY_OVERRIDES for arg in ("--set", override)]
PNG_MAGIC = b"\x89PNG"


def l2l(*args: str | Path):
    """Runs `l2l ARGS` in this process; the result has exit_code, stdout and stderr."""
    return CliRunner().invoke(app, [str(arg) for arg in args])


def assert_user_error(result, *fragments: str) -> None:
    """Exit code 2 and exactly one line on stderr, `error: ...`, naming every fragment."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ([], ["meta-train", "evaluate", "compare", "plot", "pretrained"]),
        (["meta-train"], ["--task", "--config", "--out", "--seed", "--set", "--resume", "--force"]),
        (["evaluate"], ["--optimizer", "--task", "--config", "--out", "--test-seed", "--set"]),
        (["compare"], ["--baselines", "--learned", "--config", "--out", "--test-seed", "--set"]),
        (["plot"], ["path", "--out"]),
    ],
    ids=["top-level", "meta-train", "evaluate", "compare", "plot"],
)
def test_help_of_every_command(command, options):
    result = l2l(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage" in result.stdout
    for option in options:
        assert option in result.stdout


@pytest.mark.parametrize("command", [compare_command, sweep_command], ids=["compare", "sweep"])
def test_baselines_default_to_all_five(command):
    default = inspect.signature(command).parameters["baselines"].default
    assert default.split(",") == list(BASELINE_NAMES)
    assert set(BASELINE_NAMES) == {"sgd", "momentum", "nag", "rmsprop", "adam"}


def test_installed_entry_point_help_and_one_line_error(tmp_path):
    l2l_script = Path(sys.executable).parent / "l2l"
    help_run = subprocess.run([l2l_script, "--help"], capture_output=True, text=True, timeout=60)
    assert help_run.returncode == 0
    assert "meta-train" in help_run.stdout
    error_run = subprocess.run(
        [l2l_script, "meta-train", "--task", "imagenet", "--out", tmp_path / "run"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert error_run.returncode == 2
    assert error_run.stderr.strip().splitlines() == [
        "error: task.name must be one of quadratic, mnist, cifar10, style; got 'imagenet'"
    ]
    assert not (tmp_path / "run").exists()


@pytest.fixture
def run_without_checkpoints(tmp_path, tiny_config) -> Path:
    run_dir = tmp_path / "fresh"
    runs.create_run_dir(run_dir, tiny_config)
    return run_dir


@pytest.fixture
def run_with_corrupt_checkpoint(run_without_checkpoints) -> Path:
    checkpoint = runs.best_weights_path(run_without_checkpoints)
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(np.random.default_rng(0).bytes(300))
    return run_without_checkpoints


BAD_INPUT = {
    "unknown-task": (["meta-train", "--task", "imagenet"], ["task.name", "imagenet"]),
    "evaluate-unknown-task": (
        ["evaluate", "--task", "imagenet", "--optimizer", "adam:0.1"],
        ["task.name"],
    ),
    "compare-unknown-task": (
        ["compare", "--task", "imagenet", "--baselines", "sgd"],
        ["task.name"],
    ),
    "unknown-baseline": (
        ["compare", "--baselines", "adam,bogus"],
        ["unknown baseline 'bogus'", "adam"],
    ),
    "baseline-without-rate": (["evaluate", "--optimizer", "adam"], ["needs a learning rate"]),
    "baseline-rate-not-a-number": (["evaluate", "--optimizer", "adam:fast"], ["not a number"]),
    "set-without-value": (["meta-train", "--set", "meta.iterations"], ["section.field=value"]),
    "set-wrong-type": (["meta-train", "--set", "meta.iterations=many"], ["meta.iterations", "int"]),
    "set-unknown-field": (["meta-train", "--set", "meta.bogus=1"], ["meta.bogus"]),
    "set-out-of-range": (["meta-train", "--set", "meta.unroll=0"], ["meta.unroll", ">= 1"]),
    "set-negative-rate": (
        ["meta-train", "--set", "meta.learning_rate=-0.1"],
        ["meta.learning_rate"],
    ),
    "set-empty-lr-grid": (["compare", "--set", "eval.lr_max=0.00001"], ["eval.lr_max"]),
    "missing-config": (["meta-train", "--config", "{tmp}/missing.yaml"], ["config file not found"]),
    "missing-optimizer": (["evaluate", "--optimizer", "{tmp}/missing"], ["neither a run folder"]),
    "missing-learned": (["compare", "--learned", "{tmp}/missing"], ["neither a run folder"]),
    "plot-no-data": (["plot", "{tmp}"], ["no curves.json"]),
    "plot-missing-path": (["plot", "{tmp}/missing"], ["does not exist"]),
}


@pytest.mark.parametrize(("args", "fragments"), BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, args, fragments):
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    if args[0] == "meta-train":
        args += ["--out", str(tmp_path / "run")]
    result = l2l(*args)
    assert_user_error(result, *fragments)
    assert not (tmp_path / "run").exists()  # nothing was started


@pytest.mark.parametrize(
    "command",
    [["evaluate", "--optimizer", "{run}"], ["compare", "--baselines", "sgd", "--learned", "{run}"]],
    ids=["evaluate", "compare"],
)
def test_corrupt_checkpoint_is_a_user_error(run_with_corrupt_checkpoint, tmp_path, command):
    args = [arg.replace("{run}", str(run_with_corrupt_checkpoint)) for arg in command]
    assert_user_error(l2l(*args, "--out", tmp_path / "out"), "best.msgpack", "corrupt")


def test_missing_checkpoint_of_a_run_folder_is_a_user_error(run_without_checkpoints, tmp_path):
    result = l2l("evaluate", "--optimizer", run_without_checkpoints, "--out", tmp_path / "out")
    assert_user_error(result, "best.msgpack", "not found")


def test_existing_run_folder_needs_resume_or_force(run_without_checkpoints, tiny_config):
    config_file = run_without_checkpoints / runs.CONFIG_FILE
    save_config(with_overrides(tiny_config, ["seed=5"]), config_file)
    before = config_file.read_text()
    result = l2l("meta-train", "--out", run_without_checkpoints, *TINY_SETS)
    assert_user_error(result, "exists already", "--resume", "--force")
    assert config_file.read_text() == before
    assert not (run_without_checkpoints / runs.METRICS_FILE).exists()


def test_resume_needs_a_checkpoint_and_a_run_folder(run_without_checkpoints, tmp_path):
    result = l2l("meta-train", "--out", run_without_checkpoints, "--resume")
    assert_user_error(result, "no checkpoint to resume from")
    (tmp_path / "empty").mkdir()
    assert_user_error(l2l("meta-train", "--out", tmp_path / "empty", "--resume"), "not a run")
    result = l2l("meta-train", "--out", run_without_checkpoints, "--resume", "--set", "seed=3")
    assert_user_error(result, "--resume continues with the run's own config.yaml")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, compilation_cache):
    """`l2l meta-train` on the tiny config: (result, run folder)."""
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    return l2l("meta-train", "--out", run_dir, *TINY_SETS), run_dir


@pytest.fixture(scope="module")
def compared(trained):
    """`l2l compare` of the trained run with tuned adam and sgd: (result, output folder)."""
    _, run_dir = trained
    out_dir = run_dir.parent / "compare"
    result = l2l(
        "compare", "--learned", run_dir, "--baselines", "adam,sgd", "--out", out_dir, *TINY_SETS
    )
    return result, out_dir


def test_meta_train_writes_the_run_folder(trained, tiny_config):
    result, run_dir = trained
    assert result.exit_code == 0, result.output
    assert "best validation loss" in result.stderr
    assert load_config(run_dir / runs.CONFIG_FILE) == tiny_config
    metrics = runs.read_metrics(run_dir)
    assert [r["iteration"] for r in metrics] == list(range(tiny_config.meta.iterations + 1))
    for path in (runs.best_weights_path(run_dir), runs.latest_weights_path(run_dir)):
        assert load_weights(path)[1] == tiny_config.optimizer
    assert runs.training_state_path(run_dir).is_file()
    assert (run_dir / "meta_training.png").read_bytes().startswith(PNG_MAGIC)
    assert (run_dir / "meta_training.pdf").is_file()

    curves = read_json(run_dir / "eval" / "curves.json")
    assert list(curves["optimizers"]) == ["LSTM (run)"]
    learned = curves["optimizers"]["LSTM (run)"]
    assert learned["learning_rate"] is None
    assert len(learned["final_losses"]) == tiny_config.eval.num_problems
    assert len(learned["mean"]) == tiny_config.eval.num_steps + 1
    assert learned["final_mean"] == pytest.approx(np.mean(learned["final_losses"]), rel=1e-5)
    assert (run_dir / "eval" / "summary.md").is_file()
    assert (run_dir / "eval" / "loss.png").read_bytes().startswith(PNG_MAGIC)


def test_compare_writes_every_optimizer_on_the_same_problems(compared, trained, tiny_config):
    result, out_dir = compared
    assert result.exit_code == 0, result.output
    curves = read_json(out_dir / "curves.json")
    assert curves["num_problems"] == tiny_config.eval.num_problems
    assert set(curves["optimizers"]) == {"LSTM (run)", "adam", "sgd"}
    initial_losses = set()
    for entry in curves["optimizers"].values():
        assert len(entry["final_losses"]) == tiny_config.eval.num_problems
        assert len(entry["mean"]) == tiny_config.eval.num_steps + 1
        initial_losses.add(round(entry["mean"][0], 4))
    assert len(initial_losses) == 1  # same problems, same starting points

    # The learned optimizer's curves equal those meta-train's own evaluation wrote.
    _, run_dir = trained
    evaluated = read_json(run_dir / "eval" / "curves.json")["optimizers"]["LSTM (run)"]
    assert curves["optimizers"]["LSTM (run)"]["mean"] == evaluated["mean"]

    summary = (out_dir / "summary.md").read_text()
    table_rows = [line for line in summary.splitlines() if line.startswith("| ")]
    assert len(table_rows) == 1 + 3  # header + one row per optimizer
    for label in ("LSTM (run)", "adam", "sgd"):
        assert f"| {label} |" in summary
    for name in ("loss.png", "loss.pdf"):
        assert (out_dir / name).stat().st_size > 0
    assert (out_dir / "loss.png").read_bytes().startswith(PNG_MAGIC)
    assert "summary.md" in result.stdout


def test_compare_reports_each_optimizer_as_it_finishes_with_an_eta(compared):
    result, out_dir = compared
    curves = read_json(out_dir / "curves.json")["optimizers"]
    lines = [line for line in result.stderr.splitlines() if line.startswith("  [")]
    assert [line.split("] ")[1].split(":")[0] for line in lines] == list(curves)
    assert lines[0].startswith("  [1/3]") and lines[-1].startswith("  [3/3]")
    assert all("elapsed, ETA " in line for line in lines)
    assert lines[-1].endswith("ETA 0s)")
    adam = curves["adam"]
    assert f"adam: tuned lr {adam['learning_rate']:.3g}, final mean loss" in lines[-2]


def test_compare_tunes_each_baseline_to_the_argmin_of_its_grid(compared, tiny_config):
    _, out_dir = compared
    tuning = read_json(out_dir / "tuning.json")
    curves = read_json(out_dir / "curves.json")
    assert set(tuning) == {"adam", "sgd"}
    for name, record in tuning.items():
        scores = record["final_mean_loss_by_learning_rate"]
        rates = np.array([float(rate) for rate in scores])
        grid = learning_rate_grid(
            tiny_config.eval, record["extended_below"], record["extended_above"]
        )
        np.testing.assert_allclose(rates, grid, rtol=1e-12)
        assert record["best_is_interior"]
        finite = {float(rate): loss for rate, loss in scores.items() if loss is not None}
        assert finite, f"every learning rate of {name} diverged"
        argmin = min(finite, key=finite.get)
        assert record["best_learning_rate"] == argmin
        assert curves["optimizers"][name]["learning_rate"] == argmin
        assert all(loss is None or math.isfinite(loss) for loss in scores.values())
    # sgd diverges on the top of this grid: the diverged rates are recorded as null, not chosen.
    assert None in tuning["sgd"]["final_mean_loss_by_learning_rate"].values()


def test_evaluate_a_baseline_matches_the_same_baseline_in_compare(compared, tmp_path):
    _, compare_dir = compared
    tuned_sgd = read_json(compare_dir / "curves.json")["optimizers"]["sgd"]
    result = l2l(
        "evaluate",
        "--optimizer",
        f"sgd:{tuned_sgd['learning_rate']!r}",
        "--out",
        tmp_path / "sgd",
        *TINY_SETS,
    )
    assert result.exit_code == 0, result.output
    assert (
        read_json(tmp_path / "sgd" / "curves.json")["optimizers"]["sgd"]["mean"]
        == (tuned_sgd["mean"])
    )

    result = l2l("evaluate", "--optimizer", "adam:0.1", "--out", tmp_path / "adam", *TINY_SETS)
    assert result.exit_code == 0, result.output
    adam = read_json(tmp_path / "adam" / "curves.json")["optimizers"]["adam"]
    assert adam["learning_rate"] == 0.1
    assert adam["mean"][-1] < adam["mean"][0]
    assert "| adam | 0.1 |" in (tmp_path / "adam" / "summary.md").read_text()
    assert (tmp_path / "adam" / "loss.png").read_bytes().startswith(PNG_MAGIC)


def test_plot_redraws_the_figures(compared, trained):
    _, compare_dir = compared
    (compare_dir / "loss.png").unlink()
    result = l2l("plot", compare_dir)
    assert result.exit_code == 0, result.output
    assert (compare_dir / "loss.png").read_bytes().startswith(PNG_MAGIC)
    assert str(compare_dir / "loss.png") in result.stdout

    _, run_dir = trained
    (run_dir / "meta_training.png").unlink()
    (run_dir / "eval" / "loss.png").unlink()
    result = l2l("plot", run_dir)
    assert result.exit_code == 0, result.output
    assert (run_dir / "meta_training.png").is_file()
    assert (run_dir / "eval" / "loss.png").is_file()


def test_plot_into_a_new_out_folder(compared, tmp_path):
    _, compare_dir = compared
    out_dir = tmp_path / "figures"
    result = l2l("plot", compare_dir, "--out", out_dir)
    assert result.exit_code == 0, result.output
    assert (out_dir / "loss.png").read_bytes().startswith(PNG_MAGIC)


class Killed(Exception):
    """Stands for the process being killed in the middle of a run."""


def test_force_replaces_a_run_and_resume_finishes_it_exactly(
    trained, tmp_path, monkeypatch, tiny_config
):
    """A forced fresh run, killed at iteration 4 and resumed, ends like the uninterrupted one."""
    _, uninterrupted = trained
    run_dir = tmp_path / "run"
    runs.create_run_dir(run_dir, with_overrides(tiny_config, ["seed=9"]))
    (run_dir / "stale.txt").write_text("from an older run")

    original_update = progress.MetaTrainingDisplay.update

    def update_then_die(self, record):
        original_update(self, record)
        if record["iteration"] == 4:
            raise Killed

    monkeypatch.setattr(progress.MetaTrainingDisplay, "update", update_then_die)
    killed = l2l("meta-train", "--out", run_dir, "--force", "--no-evaluate", *TINY_SETS)
    assert isinstance(killed.exception, Killed)
    assert not (run_dir / "stale.txt").exists()
    assert load_config(run_dir / runs.CONFIG_FILE) == tiny_config
    monkeypatch.setattr(progress.MetaTrainingDisplay, "update", original_update)

    resumed = l2l("meta-train", "--out", run_dir, "--resume", "--no-evaluate")
    assert resumed.exit_code == 0, resumed.output
    assert runs.read_metrics(run_dir) == runs.read_metrics(uninterrupted)
    final = load_weights(runs.latest_weights_path(run_dir))[0]
    expected = load_weights(runs.latest_weights_path(uninterrupted))[0]
    for got, want in zip(jax.tree.leaves(final), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(got, want)
    assert not (run_dir / "eval").exists()  # --no-evaluate


def test_config_file_then_set_then_test_seed(tmp_path, tiny_config):
    """The config an evaluation records is the file, then every --set, then --test-seed."""
    config_file = tmp_path / "experiment.yaml"
    save_config(
        with_overrides(Config(), ["seed=4", "eval.seed=3", "eval.num_steps=50"]), config_file
    )
    result = l2l(
        "evaluate",
        "--optimizer",
        "adam:0.1",
        "--config",
        config_file,
        "--test-seed",
        7,
        "--out",
        tmp_path / "out",
        *TINY_SETS,
    )
    assert result.exit_code == 0, result.output
    curves = read_json(tmp_path / "out" / "curves.json")
    expected = with_overrides(tiny_config, ["seed=4", "eval.seed=7"])
    assert curves["config"] == json.loads(json.dumps(config_to_dict(expected)))
    assert curves["test_seed"] == 7


def test_set_accepts_floats_in_exponent_notation(tmp_path):
    """`1e-5` is a float to anyone typing it (PyYAML alone reads it as a string)."""
    out_dir = tmp_path / "out"
    result = l2l(
        "evaluate",
        "--optimizer",
        "adam:0.1",
        "--out",
        out_dir,
        *TINY_SETS,
        "--set",
        "eval.lr_min=1e-5",
    )
    assert result.exit_code == 0, result.output
    assert read_json(out_dir / "curves.json")["config"]["eval"]["lr_min"] == 1e-5


class Resolved(Exception):
    """Raised in place of a command's first piece of work, carrying the config it resolved."""


@pytest.fixture
def resolved_config(monkeypatch):
    """`resolved_config(*ARGS)`: the config `l2l ARGS` would run with. The command runs through
    its option parsing and config resolution; no data is read and nothing is computed."""

    def stop(config, *args, **kwargs):
        raise Resolved(config)

    for module in ("l2lgd.tasks", "l2lgd.compare"):
        monkeypatch.setattr(f"{module}.make_task", lambda task_config: None)
    monkeypatch.setattr("l2lgd.runs.create_run_dir", lambda run_dir, config, force: stop(config))
    monkeypatch.setattr("l2lgd.compare.compare_optimizers", stop)

    def run(*args: str | Path) -> Config:
        result = l2l(*args)
        assert isinstance(result.exception, Resolved), result.output
        return result.exception.args[0]

    return run


def shipped_training_config(name: str) -> Config:
    from l2lgd.config import config_from_dict
    from l2lgd.pretrained import read_provenance

    return config_from_dict(read_provenance(name)["config"])


def test_a_task_alone_selects_its_shipped_config(resolved_config, tmp_path):
    out = ["--out", tmp_path / "out"]
    assert resolved_config("meta-train", "--task", "mnist", *out) == load_config("mnist")
    assert resolved_config("meta-train", *out) == load_config("quadratic") == Config()
    assert resolved_config("compare", "--task", "mnist", *out) == load_config("mnist")
    # A config alone brings its task; a config may be named.
    assert resolved_config("meta-train", "--config", "mnist_40units", *out) == load_config(
        "mnist_40units"
    )


def test_a_shipped_optimizer_brings_the_config_it_was_trained_with(resolved_config, tmp_path):
    out = ["--out", tmp_path / "out"]
    config = resolved_config("compare", "--task", "mnist", "--learned", "mnist", *out)
    assert config == shipped_training_config("mnist")
    assert config.task.name == "mnist" and config.eval.num_problems == 100
    config = resolved_config("compare", "--learned", "quadratic_deepmind", *out)
    assert config.task.variant == "deepmind"
    # On another task, the task's own config; an explicit --config always wins.
    config = resolved_config("compare", "--task", "mnist", "--learned", "quadratic", *out)
    assert config == load_config("mnist")
    config = resolved_config("compare", "--config", "mnist_relu", "--learned", "mnist", *out)
    assert config == load_config("mnist_relu")


def test_a_task_that_disagrees_with_the_config_is_a_user_error(tmp_path):
    result = l2l("meta-train", "--task", "quadratic", "--config", "mnist", "--out", tmp_path / "r")
    assert_user_error(result, "--task quadratic", "task.name mnist")
    result = l2l("compare", "--task", "cifar10", "--config", "configs/mnist.yaml")
    assert_user_error(result, "--task cifar10", "task.name mnist")
    assert not (tmp_path / "r").exists()
